import CLibBPF

extension DeleteOutcome {
    /// What a compare-and-delete program's result bits (CTCTL_STAGE_R_*, ctctl_abi.h) mean;
    /// both layouts' programs answer in them.
    init(stageResult r: UInt8, dryRun: Bool) {
        if dryRun {
            self = .wouldDelete(partner: r.stagePartnerOK)
        } else if r & UInt8(CTCTL_STAGE_R_GONE) != 0 {
            self = .gone
        } else if r & UInt8(CTCTL_STAGE_R_CHANGED) != 0 {
            self = .changed
        } else if r.stageRuleFailed {
            self = .noLongerStale
        } else {
            self = r.stageDeleted ? .deleted(partner: r.stagePartnerDeleted) : .gone
        }
    }
}

extension UInt8 {
    var stageDeleted: Bool { self & UInt8(CTCTL_STAGE_R_DELETED) != 0 }
    var stagePartnerOK: Bool { self & UInt8(CTCTL_STAGE_R_PARTNER_OK) != 0 }
    var stagePartnerDeleted: Bool { self & UInt8(CTCTL_STAGE_R_PARTNER_DELETED) != 0 }
    var stageRuleFailed: Bool { self & UInt8(CTCTL_STAGE_R_RULE_FAILED) != 0 }
}

/// Runs a compare-and-delete program (a SYSCALL program: ctx_in only, no data, no repeat)
/// over `count` staged slots with a struct ctctl_stage_ctx; both layouts' programs take it.
/// Returns how many entries it deleted, partners included. `what` and `path` name the
/// program in errors.
func runStageProgram(_ fd: Int32, count: Int, what: String, path: String) throws(CtctlError) -> Int {
    guard count > 0 else { return 0 }
    var ctx = ctctl_stage_ctx(op: CTCTL_STAGE_OP_DELETE.rawValue, count: UInt32(count), done: 0, deleted: 0)
    var retval: UInt32 = 0
    var duration: UInt32 = 0
    do throws(Errno) {
        try Errno.bpf {
            CLibBPF_prog_test_run(fd, nil, 0, nil, nil, &ctx, UInt32(MemoryLayout<ctctl_stage_ctx>.size), 0, &retval, &duration)
        }
    } catch {
        throw CtctlError.from(error, doing: "running \(what)", path: path)
    }
    guard retval == 0, ctx.done == UInt32(count) else {
        throw CtctlError(.software, "\(what) processed \(ctx.done) of \(count) entries (returned \(retval))")
    }
    return Int(ctx.deleted)
}
