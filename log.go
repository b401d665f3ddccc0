package main

// hacron's own log: log/slog, as text or JSON on stderr, or to syslog with
// rcron's facility and level names. Quiet by default for `hacron run`:
// cron mails anything printed.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
)

var syslogFacilities = map[string]syslog.Priority{
	"LOG_KERN": syslog.LOG_KERN, "LOG_USER": syslog.LOG_USER, "LOG_MAIL": syslog.LOG_MAIL,
	"LOG_DAEMON": syslog.LOG_DAEMON, "LOG_AUTH": syslog.LOG_AUTH, "LOG_SYSLOG": syslog.LOG_SYSLOG,
	"LOG_LPR": syslog.LOG_LPR, "LOG_NEWS": syslog.LOG_NEWS, "LOG_UUCP": syslog.LOG_UUCP,
	"LOG_CRON": syslog.LOG_CRON, "LOG_AUTHPRIV": syslog.LOG_AUTHPRIV, "LOG_FTP": syslog.LOG_FTP,
	"LOG_LOCAL0": syslog.LOG_LOCAL0, "LOG_LOCAL1": syslog.LOG_LOCAL1, "LOG_LOCAL2": syslog.LOG_LOCAL2,
	"LOG_LOCAL3": syslog.LOG_LOCAL3, "LOG_LOCAL4": syslog.LOG_LOCAL4, "LOG_LOCAL5": syslog.LOG_LOCAL5,
	"LOG_LOCAL6": syslog.LOG_LOCAL6, "LOG_LOCAL7": syslog.LOG_LOCAL7,
}

// syslogLevels maps rcron's syslog_level names to the lowest slog level
// that is logged.
var syslogLevels = map[string]slog.Level{
	"LOG_EMERG": slog.LevelError, "LOG_ALERT": slog.LevelError, "LOG_CRIT": slog.LevelError,
	"LOG_ERR": slog.LevelError, "LOG_WARNING": slog.LevelWarn, "LOG_NOTICE": slog.LevelWarn,
	"LOG_INFO": slog.LevelInfo, "LOG_DEBUG": slog.LevelDebug,
}

// dialSyslog connects to the local syslog daemon.
var dialSyslog = func(p syslog.Priority) (*syslog.Writer, error) {
	return syslog.New(p, "hacron")
}

// logTarget says where a command's log goes when it is not syslog.
type logTarget struct {
	w   io.Writer
	cli bool // a short-lived command: warnings and errors as "hacron: warning: ..." lines
}

// stderrLog is the default for short-lived commands: cron mails stderr, so
// what a person reads there looks like hacron's other messages.
var stderrLog = logTarget{w: os.Stderr, cli: true}

// newLogger builds the logger the options ask for, on stderr. def is the
// command's level when --log-level is not given.
func newLogger(g *globals, def slog.Level) (*slog.Logger, error) {
	h, err := newHandler(g, def, stderrLog)
	if err != nil {
		return nil, err
	}
	return slog.New(h), nil
}

// newHandler builds the handler the options ask for. Logging never stops
// a job: without a syslog daemon (no /dev/log in a container or chroot) it
// falls back to the target, with one warning.
func newHandler(g *globals, def slog.Level, to logTarget) (slog.Handler, error) {
	level := def
	if g.LogLevel != "" {
		if err := level.UnmarshalText([]byte(g.LogLevel)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
	}
	plain := func() slog.Handler {
		opts := &slog.HandlerOptions{Level: level}
		if g.LogFormat == "json" {
			return slog.NewJSONHandler(to.w, opts)
		}
		h := slog.NewTextHandler(to.w, opts)
		if to.cli {
			return &cliHandler{Handler: h, w: to.w}
		}
		return h
	}
	if !g.Syslog {
		return plain(), nil
	}
	fac, ok := syslogFacilities[strings.ToUpper(g.SyslogFacility)]
	if !ok {
		return nil, fmt.Errorf("unknown syslog facility %q (LOG_CRON, LOG_DAEMON, LOG_LOCAL0 ...)", g.SyslogFacility)
	}
	lowest, ok := syslogLevels[strings.ToUpper(g.SyslogLevel)]
	if !ok {
		return nil, fmt.Errorf("unknown syslog level %q (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG ...)", g.SyslogLevel)
	}
	if g.LogLevel == "" {
		level = lowest
	}
	w, err := dialSyslog(fac | syslog.LOG_INFO)
	if err != nil {
		h := plain()
		slog.New(h).Warn("syslog unavailable; logging to stderr instead", "err", err)
		return h, nil
	}
	return &syslogHandler{w: w, level: level, json: g.LogFormat == "json"}, nil
}

// cliHandler prints warnings and errors in hacron's message style
// ("hacron: warning: what happened key=value ..."); other levels keep the
// plain text form.
type cliHandler struct {
	slog.Handler
	w     io.Writer
	attrs []slog.Attr
}

func (h *cliHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.Handler.Handle(ctx, r)
	}
	var b strings.Builder
	drop := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}
	attrs := slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: drop}).WithAttrs(h.attrs)
	if err := attrs.Handle(ctx, r); err != nil {
		return err
	}
	word := "warning"
	if r.Level >= slog.LevelError {
		word = "error"
	}
	line := "hacron: " + word + ": " + r.Message
	if rest := strings.TrimSpace(b.String()); rest != "" {
		line += " (" + rest + ")"
	}
	_, err := io.WriteString(h.w, line+"\n")
	return err
}

func (h *cliHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &cliHandler{Handler: h.Handler.WithAttrs(attrs), w: h.w, attrs: append(slices.Clone(h.attrs), attrs...)}
}

func (h *cliHandler) WithGroup(name string) slog.Handler {
	return &cliHandler{Handler: h.Handler.WithGroup(name), w: h.w, attrs: h.attrs}
}

// liveHandler lets the agent change its log settings on SIGHUP without
// rebuilding every logger that holds it.
type liveHandler struct {
	h atomic.Pointer[slog.Handler]
}

func newLiveHandler(h slog.Handler) *liveHandler {
	l := &liveHandler{}
	l.set(h)
	return l
}

func (l *liveHandler) set(h slog.Handler) { l.h.Store(&h) }

func (l *liveHandler) current() slog.Handler { return *l.h.Load() }

func (l *liveHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return l.current().Enabled(ctx, lv)
}

func (l *liveHandler) Handle(ctx context.Context, r slog.Record) error {
	return l.current().Handle(ctx, r)
}

func (l *liveHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &boundHandler{live: l, attrs: attrs}
}

func (l *liveHandler) WithGroup(name string) slog.Handler {
	return &boundHandler{live: l, group: name}
}

// boundHandler is a liveHandler with attributes or a group applied at the
// time of each record, to whatever handler is current then.
type boundHandler struct {
	live  *liveHandler
	attrs []slog.Attr
	group string
}

func (b *boundHandler) handler() slog.Handler {
	h := b.live.current().WithAttrs(b.attrs)
	if b.group != "" {
		h = h.WithGroup(b.group)
	}
	return h
}

func (b *boundHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return b.live.Enabled(ctx, lv)
}

func (b *boundHandler) Handle(ctx context.Context, r slog.Record) error {
	return b.handler().Handle(ctx, r)
}

func (b *boundHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &boundHandler{live: b.live, attrs: append(slices.Clone(b.attrs), attrs...), group: b.group}
}

func (b *boundHandler) WithGroup(name string) slog.Handler {
	return &boundHandler{live: b.live, attrs: b.attrs, group: name}
}

// syslogHandler writes each record as one syslog message at the matching
// priority; the time and level are syslog's own fields.
type syslogHandler struct {
	w     *syslog.Writer
	level slog.Level
	json  bool
	attrs []slog.Attr
	group string
}

func (h *syslogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *syslogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	opts := &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		},
	}
	var inner slog.Handler = slog.NewTextHandler(&b, opts)
	if h.json {
		inner = slog.NewJSONHandler(&b, opts)
	}
	inner = inner.WithAttrs(h.attrs)
	if h.group != "" {
		inner = inner.WithGroup(h.group)
	}
	if err := inner.Handle(context.Background(), r); err != nil {
		return err
	}
	msg := strings.TrimRight(b.String(), "\n")
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(msg)
	case r.Level >= slog.LevelInfo:
		return h.w.Info(msg)
	default:
		return h.w.Debug(msg)
	}
}

func (h *syslogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), attrs...)
	return &c
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = name
	return &c
}
