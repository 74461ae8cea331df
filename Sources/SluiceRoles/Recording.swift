import Foundation
import SluiceConfig
import SluicePlan
import SluiceTensor
import SluiceWire

/// A sensor recording in memory: samples of many sensors in time order.
public struct Recording {
    public var channelNames: [String]
    public var sensors: [String]
    public var times: [Double]
    /// samples.count == times.count × channelNames.count, sample-major.
    public var samples: [Float]
    public var labels: [String?]

    public var count: Int { times.count }

    /// Reads a CSV with a header naming `sensor`, `t`, optionally `label`, and channel columns;
    /// or an .npy of shape [samples, channels] from one sensor at `sampleRateHz`.
    public static func load(_ config: RecordingSource) throws -> Recording {
        if config.path.hasSuffix(".npy") {
            let tensor = try NPY.read(path: config.path)
            guard tensor.rank == 2, tensor.dtype == .float32 else {
                throw RoleError("\(config.path): a recording .npy must be float32 [samples, channels], not \(tensor.dtype)\(tensor.shape)")
            }
            let rate = config.sampleRateHz ?? 1
            return try checkedTimes(config, Recording(channelNames: (0..<tensor.shape[1]).map { "ch\($0)" },
                             sensors: Array(repeating: "sensor-0", count: tensor.shape[0]),
                             times: (0..<tensor.shape[0]).map { Double($0) / rate },
                             samples: tensor.floats, labels: Array(repeating: nil, count: tensor.shape[0])))
        }
        return try checkedTimes(config, parseCSV(path: config.path, channels: config.channels))
    }

    /// Replays shift each pass by the recording's span plus a sample period (at most the span
    /// again, or 1 s): every window start they make must stay a finite number.
    private static func checkedTimes(_ config: RecordingSource, _ recording: Recording) throws -> Recording {
        if let first = recording.times.min(), let last = recording.times.max(),
           !(abs(first) + abs(last) + (2 * (last - first) + 1) * Double(config.repeats)).isFinite {
            throw RoleError("\(config.path): sample times from \(first) to \(last) s, replayed \(config.repeats) time(s), pass the largest time")
        }
        return recording
    }

    /// The channels a recording gives, read from its header alone (the CSV's first line, the
    /// .npy's shape), so checking a pipeline does not read the whole recording.
    public static func channelCount(_ config: RecordingSource) throws -> Int {
        guard let handle = FileHandle(forReadingAtPath: config.path) else { throw RoleError("\(config.path): cannot read the recording") }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 1 << 16)) ?? Data()
        if config.path.hasSuffix(".npy") {
            guard let shape = NPY.shape(ofHeader: head), shape.count == 2 else {
                throw RoleError("\(config.path): a recording .npy must be [samples, channels]")
            }
            return shape[1]
        }
        if let wanted = config.channels { return wanted.count }
        let text = String(decoding: head, as: UTF8.self)
        guard let first = text.split(whereSeparator: \.isNewline).first else { throw RoleError("\(config.path): the recording is empty") }
        return first.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !["sensor", "t", "label"].contains($0) }.count
    }

    static func parseCSV(path: String, channels wanted: [String]?) throws -> Recording {
        guard let data = FileManager.default.contents(atPath: path) else { throw RoleError("\(path): cannot read the recording") }
        var lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).makeIterator()
        guard let headerLine = lines.next() else { throw RoleError("\(path): the recording is empty") }
        let header = headerLine.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let sensorColumn = header.firstIndex(of: "sensor"), let timeColumn = header.firstIndex(of: "t") else {
            throw RoleError("\(path):1: the header must name a 'sensor' and a 't' column (found: \(header.joined(separator: ",")))")
        }
        let labelColumn = header.firstIndex(of: "label")
        let channelNames = wanted ?? header.filter { !["sensor", "t", "label"].contains($0) }
        let channelColumns = try channelNames.map { name -> Int in
            guard let column = header.firstIndex(of: name) else { throw RoleError("\(path):1: no column named '\(name)'") }
            return column
        }
        guard !channelColumns.isEmpty else { throw RoleError("\(path):1: the recording has no channel columns") }
        var recording = Recording(channelNames: channelNames, sensors: [], times: [], samples: [], labels: [])
        var lineNumber = 1
        while let line = lines.next() {
            lineNumber += 1
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count == header.count else {
                throw RoleError("\(path):\(lineNumber): \(fields.count) fields, the header has \(header.count)")
            }
            guard let time = Double(fields[timeColumn]), time.isFinite else {
                throw RoleError("\(path):\(lineNumber): t is not a finite number: '\(fields[timeColumn])'")
            }
            recording.sensors.append(String(fields[sensorColumn]))
            recording.times.append(time)
            for (name, column) in zip(channelNames, channelColumns) {
                guard let value = Float(fields[column]) else { throw RoleError("\(path):\(lineNumber): \(name) is not a number: '\(fields[column])'") }
                recording.samples.append(value)
            }
            recording.labels.append(labelColumn.map { String(fields[$0]) })
        }
        return recording
    }
}

extension PipelinePlan {
    /// The plan of a pipeline, its recording (if any) read for its channel count, its batches
    /// held to what the wire carries.
    public static func make(config: PipelineConfig) throws -> PipelinePlan {
        try make(config: config, recordingChannels: { try? Recording.channelCount($0) },
                 maximumBatchElements: BatchHeader.maximumTensorElements)
    }
}
