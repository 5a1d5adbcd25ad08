import CLibBPF
import Glibc

/// The writers' lock: an exclusive flock on the pin directory. Writers (service set and
/// delete, remove, heal, attach, detach) hold it for the whole operation, so concurrent
/// commands never interleave and a reader holding it sees one consistent NAT view.
///
/// The lock is on the directory's inode: if the directory is removed and made again while a
/// command waits (`dataplane unload` and `load`), the waiter would hold a lock nobody else
/// takes. So after flock succeeds the lock checks that the path still names the directory it
/// locked, and starts over on the new one if not.
public final class WriterLock {
    private let file: FileDescriptor
    let dir: PinDirectory

    public init(_ dir: PinDirectory, timeoutMs: Int = 30_000) throws(CtctlError) {
        self.dir = dir
        var waited = 0
        while true {
            let file: FileDescriptor
            do { file = try FileDescriptor.open(dir.path, O_RDONLY | O_DIRECTORY) } catch {
                if error.code == ENOENT {
                    throw CtctlError(
                        .unavailable, "no dataplane at \(dir.path): is it loaded? (`ctctl dataplane load --pin-dir \(dir.path)`)")
                }
                throw CtctlError.from(error, doing: "opening pin directory", path: dir.path)
            }
            while true {
                do throws(Errno) {
                    try Errno.libc { flock(file.raw, LOCK_EX | LOCK_NB) }
                    break
                } catch  where error.code == EWOULDBLOCK {
                    if waited >= timeoutMs {
                        throw CtctlError(
                            .software,
                            "another ctctl command has held the lock on \(dir.path) for \(timeoutMs / 1000)s (a running heal pass?): try again, or find it with `fuser -v \(dir.path)`"
                        )
                    }
                    usleep(10_000)
                    waited += 10
                } catch {
                    throw CtctlError.from(error, doing: "locking", path: dir.path)
                }
            }
            // locked a directory that was replaced meanwhile? then lock the new one
            if WriterLock.sameDirectory(file.raw, dir.path) {
                self.file = file
                return
            }
        }
    }

    static func sameDirectory(_ fd: Int32, _ path: String) -> Bool {
        var held = stat()
        var now = stat()
        return fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino && held.st_dev == now.st_dev
    }

    /// Does the pin directory's path still name the directory this lock holds?
    public var stillHeld: Bool { WriterLock.sameDirectory(file.raw, dir.path) }

    // closing the descriptor releases the lock

}
