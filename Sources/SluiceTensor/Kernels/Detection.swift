import Foundation

/// RoiAlign's settings: the pooled size, how many bilinear samples each output bin averages (or
/// takes the largest of), and how box coordinates map onto the feature map.
public struct RoiAlignment: Sendable, Equatable {
    public enum Mode: Sendable { case average, max }

    public var mode: Mode
    public var outputHeight: Int
    public var outputWidth: Int
    /// Samples per bin along each axis; 0 picks ceil(box size / output size) per box.
    public var samplingRatio: Int
    public var spatialScale: Float
    /// Pixel centers at +0.5 (opset 16's default); without it, as opset 10 had it, boxes
    /// shorter than one pixel are stretched to one.
    public var halfPixel: Bool

    public init(mode: Mode, outputHeight: Int, outputWidth: Int, samplingRatio: Int, spatialScale: Float, halfPixel: Bool) {
        self.mode = mode
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
        self.samplingRatio = samplingRatio
        self.spatialScale = spatialScale
        self.halfPixel = halfPixel
    }
}

/// NonMaxSuppression's settings.
public struct BoxSuppression: Sendable, Equatable {
    /// Boxes as [x_center, y_center, width, height] rather than two opposite corners [y1, x1, y2, x2].
    public var centerPointBox: Bool
    public var maxPerClass: Int
    /// A box is suppressed by a kept one when their intersection over union exceeds this.
    public var iouThreshold: Float
    /// Only boxes scoring above this are candidates; nil keeps every box.
    public var scoreThreshold: Float?

    public init(centerPointBox: Bool, maxPerClass: Int, iouThreshold: Float, scoreThreshold: Float?) {
        self.centerPointBox = centerPointBox
        self.maxPerClass = maxPerClass
        self.iouThreshold = iouThreshold
        self.scoreThreshold = scoreThreshold
    }
}

extension Kernels {
    /// ONNX RoiAlign: `x` [N, C, H, W] float32, `rois` [R, 4] float32 boxes (x1, y1, x2, y2) on
    /// image `batchIndices[r]`; the result is [R, C, outputHeight, outputWidth]. Every bin
    /// averages (or, in max mode, takes the largest of) bilinear samples on a regular grid;
    /// samples more than a pixel outside the map count as 0.
    public static func roiAlign(_ x: Tensor, rois: Tensor, batchIndices: [Int], _ p: RoiAlignment) -> Tensor {
        precondition(x.dtype == .float32 && x.rank == 4 && rois.dtype == .float32 && rois.shape == [batchIndices.count, 4],
                     "RoiAlign of \(x) with rois \(rois)")
        let (channels, height, width) = (x.shape[1], x.shape[2], x.shape[3])
        let (outH, outW) = (p.outputHeight, p.outputWidth)
        let out = Tensor(zeros: .float32, shape: [batchIndices.count, channels, outH, outW])
        let boxes = rois.floats, src = x.floatPointer, dst = out.mutableFloatPointer
        for (r, image) in batchIndices.enumerated() {
            let offset = p.halfPixel ? 0.5 : 0
            let box = (0..<4).map { Double(boxes[r * 4 + $0]) * Double(p.spatialScale) - offset }
            var (boxW, boxH) = (box[2] - box[0], box[3] - box[1])
            if !p.halfPixel {
                boxW = Swift.max(boxW, 1)
                boxH = Swift.max(boxH, 1)
            }
            let binH = boxH / Double(outH), binW = boxW / Double(outW)
            let gridH = p.samplingRatio > 0 ? p.samplingRatio : adaptiveSamples(binH)
            let gridW = p.samplingRatio > 0 ? p.samplingRatio : adaptiveSamples(binW)
            let count = Double(Swift.max(gridH * gridW, 1))
            // The four corners and weights of every sample of every bin, shared by all channels.
            var samples: [(positions: [Int], weights: [Double])] = []
            samples.reserveCapacity(outH * outW * gridH * gridW)
            for ph in 0..<outH {
                for pw in 0..<outW {
                    for iy in 0..<gridH {
                        let y = box[1] + Double(ph) * binH + (Double(iy) + 0.5) * binH / Double(gridH)
                        for ix in 0..<gridW {
                            let x = box[0] + Double(pw) * binW + (Double(ix) + 0.5) * binW / Double(gridW)
                            samples.append(bilinearCorners(y: y, x: x, height: height, width: width))
                        }
                    }
                }
            }
            let perBin = gridH * gridW
            for c in 0..<channels {
                let plane = src + (image * channels + c) * height * width
                let y = dst + (r * channels + c) * outH * outW
                for bin in 0..<(outH * outW) {
                    var total = 0.0, largest = -Double.infinity
                    for sample in samples[(bin * perBin)..<((bin + 1) * perBin)] {
                        let terms = (0..<4).map { sample.weights[$0] * Double(plane[sample.positions[$0]]) }
                        total += terms.reduce(0, +)
                        // ONNX's reference and onnxruntime take the largest weighted corner, not
                        // the largest interpolated value.
                        largest = Swift.max(largest, terms.max()!)
                    }
                    y[bin] = Float(p.mode == .average ? total / count : (perBin > 0 ? largest : 0))
                }
            }
        }
        return out
    }

    /// Samples per bin side without a sampling ratio: one per pixel the bin spans, none for an
    /// inverted box (as onnxruntime), and at most 1024, so that an absurd box cannot ask for
    /// unbounded work or memory.
    static func adaptiveSamples(_ bin: Double) -> Int {
        bin > 0 ? Int(Swift.min(bin.rounded(.up), 1024)) : 0
    }

    /// The pixels around (y, x) and their bilinear weights; all weights 0 more than a pixel
    /// outside the map, and positions clamped to its edge.
    static func bilinearCorners(y: Double, x: Double, height: Int, width: Int) -> (positions: [Int], weights: [Double]) {
        if y < -1 || y > Double(height) || x < -1 || x > Double(width) { return ([0, 0, 0, 0], [0, 0, 0, 0]) }
        var y = Swift.max(y, 0), x = Swift.max(x, 0)
        var yLow = Int(y), xLow = Int(x), yHigh = yLow + 1, xHigh = xLow + 1
        if yLow >= height - 1 {
            yLow = height - 1; yHigh = yLow; y = Double(yLow)
        }
        if xLow >= width - 1 {
            xLow = width - 1; xHigh = xLow; x = Double(xLow)
        }
        let ly = y - Double(yLow), lx = x - Double(xLow)
        let hy = 1 - ly, hx = 1 - lx
        return ([yLow * width + xLow, yLow * width + xHigh, yHigh * width + xLow, yHigh * width + xHigh],
                [hy * hx, hy * lx, ly * hx, ly * lx])
    }

    /// ONNX NonMaxSuppression: `boxes` [B, S, 4], `scores` [B, K, S] float32. For each image and
    /// class, boxes are taken by falling score (the lower index first on a tie) unless one
    /// already taken overlaps them by more than the IoU threshold. Returns (image, class, box)
    /// triples in that order.
    public static func nonMaxSuppression(boxes: Tensor, scores: Tensor, _ p: BoxSuppression) -> [(image: Int, class: Int, box: Int)] {
        precondition(boxes.dtype == .float32 && scores.dtype == .float32 && boxes.rank == 3 && scores.rank == 3
                     && boxes.shape[2] == 4 && scores.shape[0] == boxes.shape[0] && scores.shape[2] == boxes.shape[1],
                     "NonMaxSuppression of boxes \(boxes) and scores \(scores)")
        let (images, classes, count) = (scores.shape[0], scores.shape[1], scores.shape[2])
        let b = boxes.floats, s = scores.floats
        var selected: [(image: Int, class: Int, box: Int)] = []
        guard p.maxPerClass > 0 else { return selected }
        for image in 0..<images {
            // Corners (y1, x1, y2, x2), each pair ordered, whatever the input's layout.
            let corners = (0..<count).map { i -> (Float, Float, Float, Float) in
                let v = (0..<4).map { b[(image * count + i) * 4 + $0] }
                if p.centerPointBox {
                    return (v[1] - v[3] / 2, v[0] - v[2] / 2, v[1] + v[3] / 2, v[0] + v[2] / 2)
                }
                return (Swift.min(v[0], v[2]), Swift.min(v[1], v[3]), Swift.max(v[0], v[2]), Swift.max(v[1], v[3]))
            }
            func overlapsTooMuch(_ i: Int, _ j: Int) -> Bool {
                let (a, c) = (corners[i], corners[j])
                let height = Swift.min(a.2, c.2) - Swift.max(a.0, c.0)
                let width = Swift.min(a.3, c.3) - Swift.max(a.1, c.1)
                guard height > 0 && width > 0 else { return false }
                let intersection = height * width
                let union = (a.2 - a.0) * (a.3 - a.1) + (c.2 - c.0) * (c.3 - c.1) - intersection
                guard union > 0 else { return false }
                return intersection / union > p.iouThreshold
            }
            for k in 0..<classes {
                let row = (image * classes + k) * count
                var candidates = (0..<count).filter { p.scoreThreshold == nil || s[row + $0] > p.scoreThreshold! }
                candidates.sort { s[row + $0] > s[row + $1] || (s[row + $0] == s[row + $1] && $0 < $1) }
                var kept: [Int] = []
                for i in candidates where kept.count < p.maxPerClass {
                    if kept.contains(where: { overlapsTooMuch(i, $0) }) { continue }
                    kept.append(i)
                    selected.append((image, k, i))
                }
            }
        }
        return selected
    }
}
