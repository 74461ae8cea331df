import SluiceTensor
import Testing

@Suite struct DetectionTests {
    /// Values from ONNX's reference implementation (onnx.reference, RoiAlign): two images, a box
    /// inside, one reaching past every edge, and one thinner than a pixel; spatial_scale 0.9.
    @Test func roiAlignMatchesONNX() {
        let first = (1...20).map { Float($0) }
        let x = Tensor(shape: [2, 1, 4, 5], floats: first + first.map { $0 + 20 }.map { -0.5 * $0 })
        let rois = Tensor(shape: [3, 4], floats: [0.5, 0.2, 3.7, 2.9, -1.5, -0.5, 6.0, 5.0, 1, 1, 1.2, 1.1])
        let cases: [(RoiAlignment.Mode, Bool, Int, [Float])] = [
            (.average, true, 0, [2.90812, 3.86812, 4.82812, 8.9425, 9.9025, 10.8625, -7.78194, -12.4292, -13.4667, -11.282, -17.6792,
                                 -18.7167, 3.5425, 3.6025, 3.6625, 3.7675, 3.8275, 3.8875]),
            (.average, false, 0, [5.8675, 6.8275, 7.7875, 11.9425, 12.9025, 13.8625, -12.5875, -13.5125, -9.5875, -11.5896, -12.2063,
                                  -8.52361, 7.81667, 8.15, 8.48333, 10.3167, 10.65, 10.9833]),
            (.average, false, 2, [5.8675, 6.8275, 7.7875, 11.9425, 12.9025, 13.8625, -12.5531, -13.4812, -14.3969, -17.6391, -18.5672,
                                  -19.4828, 7.81667, 8.15, 8.48333, 10.3167, 10.65, 10.9833]),
            (.max, true, 2, [2.87348, 3.51794, 4.2097, 7.18369, 8.22375, 9.32831, 0, 0, 0, 0, 0, 0, 1.52246, 1.53331, 1.71548, 1.68041,
                             1.69238, 1.89346]),
            (.max, false, 0, [5.91596, 6.4703, 6.95194, 7.79805, 8.08454, 8.31512, 0, 0, 0, 0, 0, 0, 5.55333, 3.57, 4.98667, 7.28, 4.68,
                              6.19667]),
        ]
        for (mode, halfPixel, ratio, values) in cases {
            let p = RoiAlignment(mode: mode, outputHeight: 2, outputWidth: 3, samplingRatio: ratio, spatialScale: 0.9, halfPixel: halfPixel)
            let y = Kernels.roiAlign(x, rois: rois, batchIndices: [0, 1, 0], p)
            expectClose(y, Tensor(shape: [3, 1, 2, 3], floats: values), tolerance: 2e-5, "\(p)")
        }
    }

    static func suppress(_ boxes: [Float], _ scores: [Float], maxPerClass: Int = 10, iou: Float = 0.5, score: Float? = nil,
                         center: Bool = false, classes: Int = 1) -> [Int] {
        let count = boxes.count / 4
        let p = BoxSuppression(centerPointBox: center, maxPerClass: maxPerClass, iouThreshold: iou, scoreThreshold: score)
        return Kernels.nonMaxSuppression(boxes: Tensor(shape: [1, count, 4], floats: boxes),
                                         scores: Tensor(shape: [1, classes, count], floats: scores), p).map { $0.class * 100 + $0.box }
    }

    @Test func nonMaxSuppressionEdgeCases() {
        let unit: [Float] = [0, 0, 1, 1]
        // Equal scores: the lower index first; identical boxes suppress each other.
        #expect(Self.suppress(unit + unit + unit, [0.5, 0.9, 0.9]) == [1])
        // IoU exactly at the threshold does not suppress: [0,0,1,1] and [0,0,1,2] overlap by 1/2.
        #expect(Self.suppress(unit + [0, 0, 2, 1], [0.9, 0.8], iou: 0.5) == [0, 1])
        #expect(Self.suppress(unit + [0, 0, 2, 1], [0.9, 0.8], iou: 0.49) == [0])
        // A score equal to the threshold is not above it.
        #expect(Self.suppress(unit + [5, 5, 6, 6], [0.9, 0.3], score: 0.3) == [0])
        // No boxes wanted, none given.
        #expect(Self.suppress(unit, [0.9], maxPerClass: 0).isEmpty)
        // Zero-area boxes never overlap anything, even themselves.
        #expect(Self.suppress([1, 1, 1, 1, 1, 1, 1, 1], [0.2, 0.1], iou: 0) == [0, 1])
        // Corners in either order, or centers and sizes, describe the same boxes.
        #expect(Self.suppress([1, 1, 0, 0, 0, 0, 1, 1.1], [0.9, 0.8]) == [0])
        #expect(Self.suppress([0.5, 0.5, 1, 1, 0.5, 0.55, 1, 1.1, 3, 3, 1, 1], [0.7, 0.8, 0.1], center: true) == [1, 2])
        // Classes are suppressed separately, each up to the limit.
        #expect(Self.suppress(unit + [0, 0, 1, 1.05] + [4, 4, 5, 5], [0.9, 0.8, 0.7, 0.1, 0.2, 0.3], maxPerClass: 1, classes: 2)
                == [0, 102])
    }
}
