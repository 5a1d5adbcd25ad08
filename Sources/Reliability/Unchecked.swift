/// A value handed to threads the drill starts, which coordinate through their own locks.
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
