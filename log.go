package main

// hacron's own log: log/slog, as text or JSON on stderr, or to syslog with
// rcron's facility and level names. Quiet by default for `hacron run`:
// cron mails anything printed.

import (
	"context"
	"fmt"
	"log/slog"
	"log/syslog"
	"os"
	"strings"
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

// newLogger builds the logger the options ask for. def is the command's
// level when --log-level is not given.
func newLogger(g *globals, def slog.Level) (*slog.Logger, error) {
	level := def
	if g.LogLevel != "" {
		if err := level.UnmarshalText([]byte(g.LogLevel)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
	}
	if !g.Syslog {
		opts := &slog.HandlerOptions{Level: level}
		if g.LogFormat == "json" {
			return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
		}
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
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
		return nil, fmt.Errorf("syslog: %w", err)
	}
	return slog.New(&syslogHandler{w: w, level: level, json: g.LogFormat == "json"}), nil
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
