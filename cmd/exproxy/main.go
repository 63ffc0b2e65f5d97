// Command exproxy is a RESP proxy that runs beside an application in front
// of stock Redis: it passes every command through unchanged, adds Tair-style
// versioned strings through Lua it loads into Redis itself, and counts
// optimistic-locking contention into its logs.
//
//	exproxy [serve] [flags]        run the proxy (the default command)
//	exproxy contention [FILE ...]  report contention from the proxy's logs
//	exproxy config [flags]         print the effective configuration
//	exproxy lua                    print the versioned-string Lua library
//	exproxy version                print the version
//
// Exit status: 0 on success and after a graceful shutdown, 1 when running
// fails, 2 for a bad command line or setting.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, env env) int
}

// env is what a command may touch of the process, so tests can run
// commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
}

func commands() []command {
	return []command{
		{"serve", "run the proxy (the default when no command is given)", runServe},
		{"contention", "report optimistic-locking contention from the proxy's logs", runContention},
		{"config", "print the effective configuration and where each value came from", runConfig},
		{"lua", "print the Lua library behind the versioned-string commands", runLua},
		{"version", "print the version", runVersion},
		{"help", "show help for a command", runHelp},
	}
}

func main() {
	redis.SetLogger(&goRedisLogger)
	os.Exit(run(os.Args[1:], env{os.Stdin, os.Stdout, os.Stderr, os.LookupEnv}))
}

// run dispatches to a subcommand. Anything that is not a command name,
// including a flag, means serve, so "exproxy --listen ..." works.
func run(args []string, e env) int {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			usage(e.stdout)
			return exitOK
		case "-version", "--version":
			return runVersion(nil, e)
		}
		for _, c := range commands() {
			if args[0] == c.name {
				return c.run(args[1:], e)
			}
		}
		if !strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(e.stderr, "exproxy: unknown command %q (see exproxy --help)\n", args[0])
			return exitUsage
		}
	}
	return runServe(args, e)
}

// usage is the top-level help: the commands, then serve's flags, since
// serve is what runs without a command.
func usage(w io.Writer) {
	fmt.Fprintf(w, `exproxy %s: a Redis sidecar proxy with versioned strings and contention tracking

Usage:
  exproxy [serve] [flags]        run the proxy
  exproxy <command> [arguments]

Commands:
`, version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun \"exproxy <command> --help\" for a command's flags.\n\n")
	serveUsage(w)
}

func runHelp(args []string, e env) int {
	if len(args) == 0 {
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"--help"}, e)
		}
	}
	fmt.Fprintf(e.stderr, "exproxy: unknown command %q (see exproxy --help)\n", args[0])
	return exitUsage
}

func runVersion(args []string, e env) int {
	if len(args) > 0 && args[0] != "--help" && args[0] != "-h" {
		fmt.Fprintf(e.stderr, "exproxy: version takes no arguments\n")
		return exitUsage
	}
	fmt.Fprintf(e.stdout, "exproxy %s\n", version)
	return exitOK
}
