/// Streams entries as a table (`-o table`, `-o wide`) or one JSON array (`-o json`),
/// or only counts them (`--count`). Memory stays flat: JSON goes out as it is written,
/// and a table sizes its columns from the first rows, then streams.
public final class EntryPrinter {
    public enum Mode: Sendable, Equatable {
        case table(wide: Bool)
        case json
        case count
    }

    let mode: Mode
    let now: UInt64
    let showReason: Bool
    let resultColumn: Bool
    var w: ByteWriter
    public private(set) var count = 0

    // table state
    var header: [String] = []
    var widths: [Int] = []
    var heldRows: [HeldRow] = []
    let rowBuffer = RowBuffer()
    var sized = false
    static let sizingRows = 256
    /// Threads' output arrives whole chunks at a time under this lock (Worker).
    let lock = Lock()
    /// JSON: whether an entry went out yet (the first has no comma before it).
    var jsonStarted = false

    /// `showReason`: a REASON column / a non-null `reason`; `resultColumn`: a RESULT column
    /// for remove and heal reports.
    public init(_ mode: Mode, to stream: TextStream, now: UInt64, showReason: Bool, resultColumn: Bool = false) {
        self.mode = mode
        self.now = now
        self.showReason = showReason
        self.resultColumn = resultColumn
        w = ByteWriter(stream: stream)
        if case .table(let wide) = mode {
            header = ["PROTO", "SOURCE", "DESTINATION", "BACKEND", "TYPE", "LAST-SEEN", "PACKETS", "BYTES"]
            if wide { header += ["CREATED", "EPOCH", "FLAGS", "SERVICE", "KEY", "PARTNER"] }
            if showReason { header.append("REASON") }
            if resultColumn { header.append("RESULT") }
            widths = header.map(\.count)
        }
    }

    public func begin() {
        if mode == .json { w.byte(91) }
    }

    @inline(__always)
    public func add<E: EntryFacts>(_ e: E, reason: StaleReason?, outcome: DeleteOutcome? = nil) {
        count += 1
        switch mode {
        case .count:
            return
        case .json:
            w.ascii(jsonStarted ? ",\n" : "\n")
            jsonStarted = true
            EntryPrinter.json(e, now: now, reason: reason, outcome: outcome, into: &w)
            w.flushIfFull()
        case .table(let wide):
            cells(e, wide: wide, reason: reason, outcome: outcome, into: rowBuffer)
            row(rowBuffer)
        }
    }

    public func end() {
        switch mode {
        case .count:
            w.decimal(count)
            w.byte(10)
        case .json:
            w.ascii(count == 0 ? "]\n" : "\n]\n")
        case .table:
            // no rows, no header: stdout stays empty (the stderr summary says 0)
            if !sized && count > 0 { sizeAndRelease() }
        }
        w.flush()
    }

    /// A printer for one of a scan's threads: it formats entries into its own buffer and hands
    /// whole buffers to this printer (`EntryScan.threads`). Call `finish()` when its thread is
    /// done.
    public func worker() -> Worker { Worker(self) }

    public final class Worker {
        let shared: EntryPrinter
        // copied from the shared printer: read per entry without touching its cache lines
        let mode: Mode
        let now: UInt64
        var w = ByteWriter(stream: nil)
        let rowBuffer = RowBuffer()
        var count = 0
        /// The table's columns are sized (by the first rows, through the shared printer).
        var sized = false

        init(_ shared: EntryPrinter) {
            self.shared = shared
            mode = shared.mode
            now = shared.now
        }

        @inline(__always)
        public func add<E: EntryFacts>(_ e: E, reason: StaleReason?, outcome: DeleteOutcome? = nil) {
            count += 1
            switch mode {
            case .count:
                return
            case .json:
                w.ascii(",\n")
                EntryPrinter.json(e, now: now, reason: reason, outcome: outcome, into: &w)
                if w.count >= 1 << 16 { hand() }
            case .table(let wide):
                shared.cells(e, wide: wide, reason: reason, outcome: outcome, into: rowBuffer)
                if !sized {
                    // the first rows of all threads size the columns, in the shared printer
                    let taken = shared.lock.withLock { () -> Bool in
                        if shared.sized { return false }
                        shared.row(rowBuffer)
                        return true
                    }
                    if taken { return }
                    sized = true
                }
                shared.write(rowBuffer.w.buffer, ends: rowBuffer.ends, into: &w)
                if w.count >= 1 << 16 { hand() }
            }
        }

        /// Hands the buffer to the shared printer, whole.
        func hand() {
            guard !w.isEmpty else { return }
            shared.lock.withLock {
                var bytes = UnsafeRawBufferPointer(w.buffer)
                if shared.mode == .json && !shared.jsonStarted {
                    bytes = UnsafeRawBufferPointer(rebasing: bytes.dropFirst())  // the first entry has no comma before it
                    shared.jsonStarted = true
                }
                shared.w.flush()
                shared.w.stream?.write(bytes: bytes)
            }
            w.reset()
        }

        public func finish() {
            hand()
            shared.lock.withLock { shared.count += count }
        }
    }

    /// One entry's JSON object, with the delete's outcome for reports.
    @inline(__always)
    static func json<E: EntryFacts>(
        _ e: E, now: UInt64, reason: StaleReason?, outcome: DeleteOutcome?, into w: inout ByteWriter
    ) {
        EntryJSON.write(e, now: now, reason: reason, into: &w, extra: outcome.map { o in { w in outcomeJSON(o, &w) } })
    }

    static func outcomeJSON(_ o: DeleteOutcome, _ w: inout ByteWriter) {
        switch o {
        case .deleted(let p):
            w.ascii(",\"result\":\"deleted\",\"with_partner\":")
            w.ascii(p ? "true" : "false")
        case .wouldDelete(let p):
            w.ascii(",\"result\":\"would-delete\",\"with_partner\":")
            w.ascii(p ? "true" : "false")
        case .changed: w.ascii(",\"result\":\"changed\",\"with_partner\":false")
        case .noLongerStale: w.ascii(",\"result\":\"no-longer-stale\",\"with_partner\":false")
        case .gone: w.ascii(",\"result\":\"gone\",\"with_partner\":false")
        }
    }

    static func outcomeText(_ o: DeleteOutcome) -> String {
        switch o {
        case .deleted(let p): return p ? "deleted, with partner" : "deleted"
        case .wouldDelete(let p): return p ? "would delete, with partner" : "would delete"
        case .changed: return "kept: re-created since read"
        case .noLongerStale: return "kept: no longer stale"
        case .gone: return "already gone"
        }
    }

    /// One row's cells, written one after another; `ends[i]` is where cell i ends. Reused
    /// row after row.
    final class RowBuffer {
        var w = ByteWriter(stream: nil, chunk: 512)
        var ends: [Int] = []
    }

    /// A row held back while the first rows size the columns.
    struct HeldRow {
        let bytes: [UInt8]
        let ends: [Int]
    }

    func cells<E: EntryFacts>(_ e: E, wide: Bool, reason: StaleReason?, outcome: DeleteOutcome?, into r: RowBuffer) {
        r.w.reset()
        r.ends.removeAll(keepingCapacity: true)
        func cell(_ f: (inout ByteWriter) -> Void) {
            f(&r.w)
            r.ends.append(r.w.count)
        }
        func ago(_ t: UInt64) -> String { DurationText.format(nanoseconds: now > t ? now - t : 0) }
        func optional(_ b: inout ByteWriter, _ v: UInt64?) { if let v { b.decimal(v) } else { b.byte(45) } }
        cell { $0.proto(e.proto) }
        cell { $0.endpoint(e.originalSource, e.originalSourcePort) }
        cell { $0.endpoint(e.originalDestination, e.originalDestinationPort) }
        cell { b in e.isNAT ? b.endpoint(e.backendAddress, e.backendPort) : b.byte(45) }
        cell { $0.text(e.type.name) }
        cell { $0.text(ago(e.lastSeenNs)) }
        cell { optional(&$0, e.packetCount) }
        cell { optional(&$0, e.byteCount) }
        if wide {
            cell { b in e.created.map { b.text(ago($0)) } ?? b.byte(45) }
            cell { optional(&$0, e.serviceEpoch.map(UInt64.init)) }
            cell { b in
                let names = e.flagNames
                names.isEmpty ? b.byte(45) : b.text(names.joined(separator: ","))
            }
            cell { b in
                if e.isNAT {
                    b.endpoint(e.serviceAddress, e.servicePort)
                    b.byte(47)
                    b.proto(e.serviceProto)
                } else {
                    b.byte(45)
                }
            }
            cell { b in b.text(e.storedKey.description(proto: e.proto)) }
            cell { b in e.storedPartner.map { b.text($0.description(proto: e.proto)) } ?? b.byte(45) }
        }
        if showReason { cell { b in reason.map { b.text($0.rawValue) } ?? b.byte(45) } }
        if resultColumn { cell { b in b.text(outcome.map(EntryPrinter.outcomeText) ?? "-") } }
    }

    func row(_ r: RowBuffer) {
        if !sized {
            var start = 0
            for (i, end) in r.ends.enumerated() {
                widths[i] = max(widths[i], end - start)
                start = end
            }
            heldRows.append(HeldRow(bytes: r.w.bytes, ends: r.ends))
            if heldRows.count >= EntryPrinter.sizingRows { sizeAndRelease() }
            return
        }
        write(r.w.buffer, ends: r.ends, into: &w)
        w.flushIfFull()
    }

    func sizeAndRelease() {
        sized = true
        var head: [UInt8] = []
        var ends: [Int] = []
        for h in header {
            head += Array(h.utf8)
            ends.append(head.count)
        }
        head.withUnsafeBufferPointer { write($0, ends: ends, into: &w) }
        for r in heldRows { r.bytes.withUnsafeBufferPointer { write($0, ends: r.ends, into: &w) } }
        heldRows.removeAll()
    }

    /// One row, each cell padded to its column's width.
    func write(_ row: UnsafeBufferPointer<UInt8>, ends: [Int], into w: inout ByteWriter) {
        var start = 0
        for (i, end) in ends.enumerated() {
            w.append(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: row[start..<end])))
            if i < ends.count - 1 { w.spaces(widths[i] - (end - start) + 2) }
            start = end
        }
        w.byte(10)
    }
}

extension EntryScan {
    /// Runs the scan with `threads` threads, each printing through its own printer worker.
    public func run(threads: Int, into printer: EntryPrinter) throws {
        self.threads = threads
        // one thread too: a worker formats into its own buffer without the shared printer's
        // per-entry bookkeeping
        let workers = (0..<threads).map { _ in printer.worker() }
        try run(sinks: { i in { e, reason in workers[i].add(e, reason: reason) } })
        for w in workers { w.finish() }
    }
}
