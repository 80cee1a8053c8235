// Command torided is the Toride appliance daemon: it owns the configuration and every subsystem, applies the saved
// configuration at start, and serves the management API on a unix socket.
//
// Exit status: 0 after a clean stop (SIGTERM or SIGINT), 1 when it cannot run, 2 for bad flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"toride/appliance"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("torided", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "/var/lib/toride", "directory for all persistent state (configuration, archive, keys)")
	apiSocket := fs.String("api-socket", "/run/toride/api.sock", "unix socket of the management API")
	resolvConf := fs.String("resolv-conf", "/etc/resolv.conf", "resolver file written from `system dns` (empty: leave it alone)")
	manageClock := fs.Bool("manage-clock", false, "set the system clock from the configured NTP servers (the appliance image does; elsewhere the offset is only reported)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: torided [flags]\n\nThe Toride appliance daemon.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "torided: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Println("torided", version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "torided: --log-level %q: use debug, info, warn or error\n", *logLevel)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	case "json":
		log = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	default:
		fmt.Fprintf(os.Stderr, "torided: --log-format %q: use text or json\n", *logFormat)
		return 2
	}
	if err := os.MkdirAll(filepath.Dir(*apiSocket), 0o755); err != nil {
		log.Error("cannot create the API socket's directory", "err", err)
		return 1
	}
	sys, err := appliance.New(appliance.Options{
		StateDir: *stateDir, APISocket: *apiSocket, ResolvConf: *resolvConf, ManageClock: *manageClock, Version: version, Logger: log,
	})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := sys.Run(ctx, nil); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}
