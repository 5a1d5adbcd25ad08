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
    var heldRows: [[[UInt8]]] = []
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
            EntryJSON.write(
                e, now: now, reason: reason, into: &w, extra: outcome.map { o in { w in EntryPrinter.outcomeJSON(o, &w) } })
            w.flushIfFull()
        case .table(let wide):
            row(cells(e, wide: wide, reason: reason, outcome: outcome))
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
        var w = ByteWriter(stream: nil)
        var count = 0
        /// The table's columns are sized (by the first rows, through the shared printer).
        var sized = false

        init(_ shared: EntryPrinter) { self.shared = shared }

        @inline(__always)
        public func add<E: EntryFacts>(_ e: E, reason: StaleReason?, outcome: DeleteOutcome? = nil) {
            count += 1
            switch shared.mode {
            case .count:
                return
            case .json:
                w.ascii(",\n")
                EntryJSON.write(
                    e, now: shared.now, reason: reason, into: &w,
                    extra: outcome.map { o in { w in EntryPrinter.outcomeJSON(o, &w) } })
                if w.bytes.count >= 1 << 16 { hand() }
            case .table(let wide):
                let cells = shared.cells(e, wide: wide, reason: reason, outcome: outcome)
                if !sized {
                    // the first rows of all threads size the columns, in the shared printer
                    let taken = shared.lock.withLock { () -> Bool in
                        if shared.sized { return false }
                        shared.row(cells)
                        return true
                    }
                    if taken { return }
                    sized = true
                }
                shared.write(cells, into: &w)
                if w.bytes.count >= 1 << 16 { hand() }
            }
        }

        /// Hands the buffer to the shared printer, whole.
        func hand() {
            guard !w.bytes.isEmpty else { return }
            shared.lock.withLock {
                var bytes = w.bytes[...]
                if shared.mode == .json && !shared.jsonStarted {
                    bytes = bytes.dropFirst()  // the first entry has no comma before it
                    shared.jsonStarted = true
                }
                shared.w.append(Array(bytes))
                shared.w.flushIfFull()
            }
            w = ByteWriter(stream: nil)
        }

        public func finish() {
            hand()
            shared.lock.withLock { shared.count += count }
        }
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

    func cells<E: EntryFacts>(_ e: E, wide: Bool, reason: StaleReason?, outcome: DeleteOutcome?) -> [[UInt8]] {
        var c: [[UInt8]] = []
        c.reserveCapacity(header.count)
        func cell(_ f: (inout ByteWriter) -> Void) {
            var b = ByteWriter(stream: nil, chunk: 128)
            f(&b)
            c.append(b.bytes)
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
        return c
    }

    func row(_ cells: [[UInt8]]) {
        if !sized {
            for (i, c) in cells.enumerated() { widths[i] = max(widths[i], c.count) }
            heldRows.append(cells)
            if heldRows.count >= EntryPrinter.sizingRows { sizeAndRelease() }
            return
        }
        write(cells)
        w.flushIfFull()
    }

    func sizeAndRelease() {
        sized = true
        write(header.map { Array($0.utf8) })
        for r in heldRows { write(r) }
        heldRows.removeAll()
    }

    func write(_ cells: [[UInt8]]) { write(cells, into: &w) }

    func write(_ cells: [[UInt8]], into w: inout ByteWriter) {
        for (i, c) in cells.enumerated() {
            w.append(c)
            if i < cells.count - 1 { w.spaces(widths[i] - c.count + 2) }
        }
        w.byte(10)
    }
}

extension EntryScan {
    /// Runs the scan with `threads` threads, each printing through its own printer worker.
    public func run(threads: Int, into printer: EntryPrinter) throws {
        self.threads = threads
        guard threads > 1 else { return try run { e, reason in printer.add(e, reason: reason) } }
        let workers = (0..<threads).map { _ in printer.worker() }
        try run(sinks: { i in { e, reason in workers[i].add(e, reason: reason) } })
        for w in workers { w.finish() }
    }
}
