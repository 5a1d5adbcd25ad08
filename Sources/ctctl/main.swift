import CtctlCLI

// The command line lives in CtctlCLI, so tests and the reliability drills can run it in-process.
CLI.main()
