import Foundation
import SluiceProtocol
import SluiceWire

/// The traced micro-batches as a Chrome trace (the JSON "traceEvents" form Perfetto and
/// chrome://tracing open).
///
/// - One process per stage (pid = stage + 1, named "stage 2 (layers 4-7)") and one for the sink
///   (pid = stage count + 1).
/// - In a stage, thread 1 "micro-batches" holds one complete slice "batch N" per micro-batch from
///   its arrival to the start of its send, with a nested "compute" slice (computeStart…computeEnd).
///   Per-layer times per batch are not in the hops, so there is no per-layer slice.
/// - Waiting before a stage (or the sink) is a "queued" slice from the moment the batch left the
///   previous stage (or was created at the source) to its arrival. Waits of different batches
///   overlap, so they go on lanes "queue 0", "queue 1", … (tids 2, 3, …): a batch takes the
///   lowest lane free at its start, and the lanes in use show the queue depth at that moment.
///   The wait includes the transfer and any time the sender was blocked.
/// - Flow arrows (ph "s" → "f", bp "e", one id per arrow) follow each batch: from its slice in a
///   stage to its wait before the next, and from that wait to its slice there.
/// - ts and dur are microseconds from the earliest batch creation, so numbers stay small; the
///   hops' clocks are CLOCK_REALTIME, so stages in different processes line up.
public enum ChromeTrace {
    public static let batchThread = 1
    public static let firstQueueLane = 2

    /// The trace as JSON data (sorted keys).
    public static func render(_ profile: ProfileData) -> Data {
        let object: [String: Any] = [
            "traceEvents": events(profile),
            "displayTimeUnit": "ms",
            "otherData": ["pipeline": profile.pipeline, "clock": "CLOCK_REALTIME", "originNanoseconds": origin(profile.traces)],
        ]
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{\"traceEvents\":[]}".utf8)
    }

    static func origin(_ traces: [BatchTrace]) -> UInt64 { traces.map(\.created).min() ?? 0 }

    /// The events, metadata first, then slices in time order per track, parents before children.
    public static func events(_ profile: ProfileData) -> [[String: Any]] {
        let traces = profile.traces.sorted { $0.batchSequence < $1.batchSequence }
        let origin = origin(traces)
        func micros(_ nanos: UInt64) -> Double { Double(nanos &- min(nanos, origin)) / 1000 }

        let stageIndices = Set(profile.stages.map(\.index)).union(traces.flatMap { $0.hops.map { Int($0.stage) } }).sorted()
        let sinkPid = (stageIndices.last ?? -1) + 2
        func pid(ofStage stage: Int) -> Int { stage + 1 }

        var metadata: [[String: Any]] = []
        var slices: [[String: Any]] = []
        var flows: [[String: Any]] = []
        var lanes: [Int: [UInt64]] = [:]     // pid → end of the last wait on each lane
        var nextFlow = 1

        func slice(_ name: String, _ category: String, pid: Int, tid: Int, from start: UInt64, to end: UInt64, args: [String: Any]) -> (ts: Double, dur: Double) {
            // From whole nanoseconds, so a viewer converting back gets exact ends and nesting holds.
            let ts = micros(start)
            let dur = Double(max(start, end) - start) / 1000
            slices.append(["ph": "X", "name": name, "cat": category, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args])
            return (ts, dur)
        }
        func wait(pid: Int, from start: UInt64, to end: UInt64, batch: UInt64) -> (tid: Int, ts: Double, dur: Double) {
            var ends = lanes[pid] ?? []
            let lane = ends.firstIndex { $0 <= start } ?? ends.count
            if lane == ends.count { ends.append(0) }
            ends[lane] = max(start, end)
            lanes[pid] = ends
            let tid = firstQueueLane + lane
            let placed = slice("queued", "queue", pid: pid, tid: tid, from: start, to: end, args: ["batch": batch])
            return (tid, placed.ts, placed.dur)
        }
        func flow(_ name: String, from: (pid: Int, tid: Int, ts: Double, dur: Double), to: (pid: Int, tid: Int, ts: Double, dur: Double)) {
            let id = nextFlow
            nextFlow += 1
            // Inside each slice, so the arrow binds to it whatever the viewer's rule at the edges.
            flows.append(["ph": "s", "id": id, "name": name, "cat": "batch", "pid": from.pid, "tid": from.tid,
                          "ts": from.ts + from.dur / 2])
            flows.append(["ph": "f", "bp": "e", "id": id, "name": name, "cat": "batch", "pid": to.pid, "tid": to.tid,
                          "ts": to.ts + to.dur / 2])
        }

        for trace in traces {
            let name = "batch \(trace.batchSequence)"
            var left = trace.created
            var previous: (pid: Int, tid: Int, ts: Double, dur: Double)?
            for hop in trace.hops {
                let pid = pid(ofStage: Int(hop.stage))
                let queued = wait(pid: pid, from: left, to: hop.received, batch: trace.batchSequence)
                let queuedPlace = (pid: pid, tid: queued.tid, ts: queued.ts, dur: queued.dur)
                if let previous { flow(name, from: previous, to: queuedPlace) }
                let inStage = slice(name, "stage", pid: pid, tid: batchThread, from: hop.received, to: hop.sendStart,
                                    args: ["batch": trace.batchSequence, "windows": trace.windowCount])
                _ = slice("compute", "compute", pid: pid, tid: batchThread, from: max(hop.computeStart, hop.received),
                          to: min(hop.computeEnd, max(hop.sendStart, hop.received)), args: ["batch": trace.batchSequence])
                let here = (pid: pid, tid: batchThread, ts: inStage.ts, dur: inStage.dur)
                flow(name, from: queuedPlace, to: here)
                previous = here
                left = hop.sendStart
            }
            let queued = wait(pid: sinkPid, from: left, to: trace.sinkReceived, batch: trace.batchSequence)
            if let previous { flow(name, from: previous, to: (pid: sinkPid, tid: queued.tid, ts: queued.ts, dur: queued.dur)) }
        }

        func meta(_ name: String, pid: Int, tid: Int, _ args: [String: Any]) {
            metadata.append(["ph": "M", "name": name, "pid": pid, "tid": tid, "ts": 0, "args": args])
        }
        let layersByStage = Dictionary(profile.stages.map {
            ($0.index, " (\($0.firstLayer == $0.lastLayer ? "layer" : "layers") \($0.layers))")
        }, uniquingKeysWith: { first, _ in first })
        for stage in stageIndices {
            let layers = layersByStage[stage] ?? ""
            meta("process_name", pid: pid(ofStage: stage), tid: 0, ["name": "stage \(stage)\(layers)"])
            meta("process_sort_index", pid: pid(ofStage: stage), tid: 0, ["sort_index": stage])
            meta("thread_name", pid: pid(ofStage: stage), tid: batchThread, ["name": "micro-batches"])
            meta("thread_sort_index", pid: pid(ofStage: stage), tid: batchThread, ["sort_index": 0])
        }
        meta("process_name", pid: sinkPid, tid: 0, ["name": "sink"])
        meta("process_sort_index", pid: sinkPid, tid: 0, ["sort_index": sinkPid])
        for (pid, ends) in lanes.sorted(by: { $0.key < $1.key }) {
            for lane in ends.indices {
                meta("thread_name", pid: pid, tid: firstQueueLane + lane, ["name": "queue \(lane)"])
                meta("thread_sort_index", pid: pid, tid: firstQueueLane + lane, ["sort_index": 1 + lane])
            }
        }
        return metadata + slices + flows
    }
}
