package main

import (
	"os"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitUsage is hacron's code for its own failures, usage errors included
// (kong's default for those would be 80).
const exitUsage = 125

type cli struct {
	Version kong.VersionFlag `help:"Print the version and exit."`
}

// Only main exits; everything else returns errors that may carry a code.
func main() {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("hacron"),
		kong.Description("Highly available cron jobs with ZooKeeper."),
		kong.Vars{"version": version},
	)
	if err != nil {
		printError(os.Stderr, err)
		os.Exit(exitUsage)
	}
	if _, err := parser.Parse(os.Args[1:]); err != nil {
		printError(os.Stderr, withHint(err, "see 'hacron --help'"))
		os.Exit(exitUsage)
	}
}
