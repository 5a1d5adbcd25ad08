import Dispatch
import Foundation

/// Undo actions for what a run created, run once, in reverse order: at the normal end,
/// on an error, and on SIGINT or SIGTERM (a Dispatch signal source, not a raw handler).
public final class Cleanup: @unchecked Sendable {
    private let lock = NSLock()
    private var actions: [() -> Void] = []
    private var sources: [DispatchSourceSignal] = []

    public init() {}

    public func add(_ action: @escaping () -> Void) {
        lock.lock()
        actions.append(action)
        lock.unlock()
    }

    public func runAll() {
        lock.lock()
        let todo = actions.reversed()
        actions.removeAll()
        lock.unlock()
        for a in todo { a() }
    }

    /// On SIGINT/SIGTERM: run every action, then exit 130/143.
    public func onSignals() {
        for (sig, code) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143))] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [self] in
                runAll()
                exit(code)
            }
            s.resume()
            sources.append(s)
        }
    }
}
