// Command mailtrigger reads mailboxes (IMAP, POP3, Microsoft Graph) and starts
// process flows when a message's subject matches a flow's Email Trigger.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"mailtrigger/internal/cli"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		smallStacks()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.OSEnv())
	stop()
	os.Exit(code)
}
