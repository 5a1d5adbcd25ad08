# Post-processes the man page swift-argument-parser generates (make install):
# - every command's help repeats the EXIT STATUS table; the page keeps one EXIT STATUS
#   section, made from that table (one source: ExitStatus.helpTable), instead of the
#   generator's ".Ex -std", which says "exits >0 if an error occurs" (wrong for ctctl's 1);
# - adds an ENVIRONMENT section.
/^EXIT STATUS:$/ { inTable = 1; if (n == 0) { capture = 1 }; next }
inTable && /^  [0-9]/ { if (capture) { codes[++n] = $0 }; next }
inTable { inTable = 0; capture = 0 }
/^\.Sh "EXIT STATUS"$/ {
    print ".Sh EXIT STATUS"
    print ".Bl -tag -width 4n"
    for (i = 1; i <= n; i++) {
        line = codes[i]; sub(/^ +/, "", line)
        code = line; sub(/ .*/, "", code)
        text = line; sub(/^[0-9]+ +/, "", text)
        print ".It " code; print text
    }
    print ".El"
    print ".Sh ENVIRONMENT"
    print ".Bl -tag -width Ds"
    print ".It Ev CTCTL_PIN_DIR"
    print "The pin directory when --pin-dir is not given (default: /sys/fs/bpf/ctctl, else Calico's /sys/fs/bpf/tc/globals)."
    print ".It Ev CTCTL_LAYOUT"
    print "The map layout when --layout is not given: auto (the default: what the pin directory holds), ctctl or calico."
    print ".It Ev CTCTL_THREADS"
    print "Threads reading the map when --threads is not given (default: the CPUs this process may use, at most 8; the watching heal uses 1)."
    print ".It Ev CTCTL_BPF_OBJECT"
    print "The reference dataplane's BPF object for dataplane load (default: beside the binary, or ../lib/ctctl/ctctl.bpf.o)."
    print ".El"
    skipEx = 1
    next
}
skipEx && /^\.Ex/ { skipEx = 0; next }
{ print }
