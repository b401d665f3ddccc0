package main

// Mail of a scheduled run's output, as cron sends it: to MAILTO, through
// the local sendmail, only when the job wrote something.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// sendmailPath is the mailer cron uses; without it, no mail (the output
// is in the agent's log and the run record anyway). Tests point it at a
// stand-in, in the test binary's hacron only.
var sendmailPath = "/usr/sbin/sendmail"

// mailTimeout bounds one hand-over to sendmail: a mailer that hangs must
// not pile up behind a job that fires every minute.
const mailTimeout = time.Minute

// sendMail mails a run's output to f.mailTo.
func sendMail(log *slog.Logger, f firing, output []byte) {
	if _, err := os.Stat(sendmailPath); err != nil {
		log.Debug("MAILTO set but no sendmail", "path", sendmailPath)
		return
	}
	host, _ := os.Hostname()
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "To: %s\n", oneLine(f.mailTo))
	fmt.Fprintf(&msg, "Subject: Cron <%s@%s> %s\n", oneLine(userName(os.Getuid())), oneLine(host), oneLine(f.command))
	fmt.Fprintf(&msg, "Content-Type: text/plain; charset=UTF-8\n")
	fmt.Fprintf(&msg, "X-Hacron-Job: %s\nX-Hacron-Slot: %s\n\n", oneLine(f.job), oneLine(f.slot))
	msg.Write(output)
	ctx, cancel := context.WithTimeout(context.Background(), mailTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sendmailPath, "-i", "-t")
	cmd.Stdin = &msg
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		log.Warn("mailing the run's output", "to", f.mailTo, "err", err, "output", strings.TrimSpace(string(out)))
	}
}

// oneLine keeps a header value on its line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
