// Command toride is the Toride appliance's client: one-shot commands (`toride show configuration`, `toride set …`,
// `toride commit`) and, with no command, the console shell (appliance/console) reading the same commands. It
// talks to torided's API socket and never touches system state itself.
//
// Exit status: 0 on success, 1 when torided refused the command or cannot be reached, 2 for bad usage.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"toride/appliance/console"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("toride", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "torided's API socket")
	fs.Usage = func() { fmt.Fprint(stderr, console.Usage) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path := *socket
	if path == "" {
		path = os.Getenv("TORIDE_SOCKET")
	}
	if path == "" {
		path = console.DefaultSocket
	}
	sh := console.New(console.Options{API: console.NewClient(path), Stdin: stdin, Stdout: stdout, Stderr: stderr})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if fs.NArg() == 0 {
		return console.Interact(ctx, sh, stdin, stdout)
	}
	return console.Report(sh.Exec(ctx, fs.Args()), stderr)
}
