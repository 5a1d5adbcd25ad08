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
    private let fd: Int32
    let dir: PinDirectory

    public init(_ dir: PinDirectory, timeoutMs: Int = 30_000) throws(CtctlError) {
        self.dir = dir
        var waited = 0
        while true {
            let fd = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd < 0 {
                let e = Errno(errno)
                if e.code == ENOENT {
                    throw CtctlError(
                        .unavailable, "no dataplane at \(dir.path): is it loaded? (`ctctl dataplane load --pin-dir \(dir.path)`)")
                }
                throw CtctlError.from(e, doing: "opening pin directory", path: dir.path)
            }
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let e = errno
                if e == EINTR { continue }
                if e != EWOULDBLOCK {
                    close(fd)
                    throw CtctlError.from(Errno(e), doing: "locking", path: dir.path)
                }
                if waited >= timeoutMs {
                    close(fd)
                    throw CtctlError(
                        .software,
                        "another ctctl command has held the lock on \(dir.path) for \(timeoutMs / 1000)s (a running heal pass?): try again, or find it with `fuser -v \(dir.path)`"
                    )
                }
                usleep(10_000)
                waited += 10
            }
            if WriterLock.sameDirectory(fd, dir.path) {
                self.fd = fd
                return
            }
            close(fd)  // locked a directory that was replaced meanwhile: lock the new one
        }
    }

    static func sameDirectory(_ fd: Int32, _ path: String) -> Bool {
        var held = stat()
        var now = stat()
        return fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino && held.st_dev == now.st_dev
    }

    /// Does the pin directory's path still name the directory this lock holds?
    public var stillHeld: Bool { WriterLock.sameDirectory(fd, dir.path) }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
