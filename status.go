package main

// hacron status: the cluster as ZooKeeper has it: the agents in the
// election (or, in direct mode, nobody), who is active, the fencing token,
// and every job's recent runs.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
	"golang.org/x/sys/unix"
)

type statusCmd struct {
	JSON bool   `name:"json" help:"Print the status as JSON."`
	Job  string `name:"job" placeholder:"NAME" help:"Only this job: a name as hacron run --name takes it (a non-root user's own job), or USER:JOB."`
	Last int    `name:"last" placeholder:"N" default:"0" help:"At most N runs per job, newest first; 0: every run kept (default: ${default})."`

	job string // Job as it is named in ZooKeeper
}

// exitNoSuch is hacron status's code for a cluster or job that does not
// exist: a question with no answer, not a failure of hacron's.
const exitNoSuch = 1

type statusDoc struct {
	Cluster string    `json:"cluster"`
	Mode    string    `json:"mode"`
	Leader  string    `json:"leader"`
	Token   int64     `json:"token"`
	Members []member  `json:"members"`
	Jobs    []jobRuns `json:"jobs"`
}

type member struct {
	Node   string `json:"node"`
	Since  string `json:"since"`
	Active bool   `json:"active"`
}

type jobRuns struct {
	Job string `json:"job"`
	// Schedule and Since are the job node's (a job run with --schedule or
	// from the agent's crontab); Missed are the slots of the last 24 h
	// that went unrun, newest first (see missedSlots), for a job with a
	// schedule hacron can read.
	Schedule string      `json:"schedule,omitempty"`
	Since    string      `json:"since,omitempty"`
	Missed   []string    `json:"missed,omitzero"`
	Runs     []runRecord `json:"runs"`

	missedCapped bool  // Missed holds only the newest maxSlotScan slots
	scheduleErr  error // the job node's schedule does not parse
}

// statusQuery narrows what readStatus reads: one job (empty: all), at most
// last runs per job (0: all).
type statusQuery struct {
	job  string
	last int
}

func (s *statusCmd) Validate() error {
	if s.Last < 0 {
		return errors.New("--last must not be negative")
	}
	if s.Job == "" {
		return nil
	}
	var err error
	s.job, err = statusJobName(s.Job, os.Getuid())
	return err
}

// statusJobName is the ZooKeeper name of --job: USER:JOB as it is, any
// other name as hacron run would name it for this user.
func statusJobName(name string, uid int) (string, error) {
	if user, job, ok := strings.Cut(name, jobUserSep); ok {
		if !validUserPart(user) {
			return "", fmt.Errorf("bad job name %q: USER:JOB with a user name before the colon", name)
		}
		if err := checkJobName(job); err != nil {
			return "", err
		}
		return name, nil
	}
	return jobName(name, uid)
}

// openCluster connects, for a command that reads a cluster from any host,
// and makes sure the cluster exists.
func openCluster(ctx context.Context, g *globals) (*zkClient, error) {
	log, err := newLogger(g, slog.LevelWarn)
	if err != nil {
		return nil, err
	}
	zc, err := dialZK(ctx, g.zkConfig(), log)
	if err != nil {
		return nil, err
	}
	if err := clusterExists(zc, g); err != nil {
		zc.Close()
		return nil, err
	}
	return zc, nil
}

func (s *statusCmd) Run(ctx context.Context, g *globals) error {
	zc, err := openCluster(ctx, g)
	if err != nil {
		return err
	}
	defer zc.Close()
	doc, err := readStatus(zc, g.Cluster, statusQuery{job: s.job, last: s.Last})
	if err != nil {
		return err
	}
	if s.job != "" && len(doc.Jobs) == 0 {
		return withExit(exitNoSuch, fmt.Errorf("no job %s in cluster %s", s.job, g.Cluster))
	}
	if s.JSON {
		b, _ := json.MarshalIndent(doc, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	printStatus(os.Stdout, doc, terminalWidth())
	return nil
}

// clusterExists fails with exit 1 for a cluster ZooKeeper does not have;
// the hint lists the clusters it has, since a typo is the usual cause.
func clusterExists(zc *zkClient, g *globals) error {
	conn := zc.snapshot().Conn
	ok, _, err := conn.Exists(zc.abs(g.clusterRoot()))
	if err != nil {
		return fmt.Errorf("reading %s: %w", g.clusterRoot(), err)
	}
	if ok {
		return nil
	}
	hint := fmt.Sprintf("ZooKeeper at %s has no hacron cluster at all: are --zk and its chroot right?", g.ZK)
	if names, _, err := conn.Children(zc.abs("/hacron")); err == nil && len(names) > 0 {
		slices.Sort(names)
		const show = 10
		list := strings.Join(names[:min(len(names), show)], ", ")
		if len(names) > show {
			list += fmt.Sprintf(" and %d more", len(names)-show)
		}
		hint = fmt.Sprintf("clusters in ZooKeeper at %s: %s", g.ZK, list)
	}
	return withExit(exitNoSuch, withHint(fmt.Errorf("no cluster %s", g.Cluster), hint))
}

func readStatus(zc *zkClient, cluster string, q statusQuery) (statusDoc, error) {
	conn := zc.snapshot().Conn
	root := zc.abs("/hacron/" + cluster)
	doc := statusDoc{Cluster: cluster, Mode: "none", Members: []member{}, Jobs: []jobRuns{}}
	if mode, _, err := conn.Get(root + "/mode"); err == nil {
		doc.Mode = string(mode)
	} else if !errors.Is(err, zk.ErrNoNode) {
		return doc, noAuth(err, "read "+root+"/mode", root+"/mode")
	}
	kids, _, err := conn.Children(root + "/election")
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return doc, noAuth(err, "list "+root+"/election", root+"/election")
	}
	first := true
	for _, c := range parseCandidates(kids, nil) {
		m, st, err := readMember(conn, root+"/election/"+c.name)
		if st == nil || st.EphemeralOwner == 0 {
			continue // gone, unreadable, or a persistent impostor
		}
		mb := member{Node: m.Node, Since: m.Since, Active: first}
		if err != nil {
			mb.Node = "?" + c.name
		}
		if first {
			doc.Leader, doc.Token = mb.Node, st.Czxid
			first = false
		}
		doc.Members = append(doc.Members, mb)
	}
	jobs, _, err := conn.Children(root + "/jobs")
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return doc, noAuth(err, "list "+root+"/jobs", root+"/jobs")
	}
	if q.job != "" {
		jobs = slices.DeleteFunc(jobs, func(j string) bool { return j != q.job })
	}
	slices.Sort(jobs)
	now := time.Now()
	for _, job := range jobs {
		runsPath := root + "/jobs/" + job + "/runs"
		names, _, err := conn.Children(runsPath)
		if err != nil {
			continue
		}
		type rec struct {
			r     runRecord
			czxid int64
		}
		var recs []rec
		results := make(map[string]string, len(names)) // for the missed slots
		for _, n := range names {
			data, st, err := conn.Get(runsPath + "/" + n)
			if errors.Is(err, zk.ErrNoNode) {
				continue
			}
			results[n] = "" // a slot somebody took, whatever the record says
			if err != nil {
				continue
			}
			r, err := decodeRunRecord(data)
			if err != nil {
				continue // not a record of ours
			}
			results[n] = r.Result
			recs = append(recs, rec{r, st.Czxid})
		}
		slices.SortFunc(recs, func(a, b rec) int { return cmp.Compare(b.czxid, a.czxid) })
		if q.last > 0 && len(recs) > q.last {
			recs = recs[:q.last]
		}
		jr := jobRuns{Job: job, Runs: []runRecord{}}
		if info, err := readJobInfo(conn, root+"/jobs/"+job); err == nil && info.Schedule != "" {
			j := judgeJob(info, results, now)
			jr.Schedule, jr.Since, jr.scheduleErr = info.Schedule, info.Since, j.err
			if j.err == nil {
				jr.Missed, jr.missedCapped = append([]string{}, j.missed...), j.capped
			}
		}
		for _, r := range recs {
			jr.Runs = append(jr.Runs, r.r)
		}
		doc.Jobs = append(doc.Jobs, jr)
	}
	return doc, nil
}

// terminalWidth is what the runs table fits in: $COLUMNS, else the width
// of the terminal on stdout, else 120.
func terminalWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	if ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		return int(ws.Col)
	}
	return 120
}

// Widths of the runs table's columns that could grow without bound: a
// 128-character job name must not make a 250-column table. The command
// takes what is left of the line, but never less than minCmdWidth.
const (
	maxJobWidth  = 24
	maxSlotWidth = 20 // a default slot, 2006-01-02T15:04:00Z, fits
	maxNodeWidth = 16
	minCmdWidth  = 12
)

func printStatus(w io.Writer, doc statusDoc, width int) {
	fmt.Fprintf(w, "cluster %s, %s mode", doc.Cluster, doc.Mode)
	if doc.Leader != "" {
		fmt.Fprintf(w, ", active %s, fencing token %d", cell(doc.Leader, maxNodeWidth), doc.Token)
	}
	fmt.Fprintln(w)
	if len(doc.Members) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nMEMBER\tSINCE\tACTIVE")
		for _, m := range doc.Members {
			active := ""
			if m.Active {
				active = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", cell(m.Node, maxNodeWidth), cell(m.Since, 30), active)
		}
		tw.Flush()
	}
	printSchedules(w, doc, width)
	rows := [][]string{{"JOB", "SLOT", "NODE", "START", "DURATION", "EXIT", "RESULT", "CMD"}}
	for _, j := range doc.Jobs {
		for _, r := range j.Runs {
			exit, dur, result := "", "", r.Result
			if r.ExitCode != nil {
				exit = strconv.Itoa(*r.ExitCode)
			}
			start, serr := time.Parse(time.RFC3339, r.Start)
			if end, err := time.Parse(time.RFC3339, r.End); err == nil && serr == nil {
				dur = end.Sub(start).Round(time.Millisecond).String()
			}
			if r.End == "" {
				dur, result = "-", "running"
			}
			shown := r.Start
			if serr == nil {
				shown = start.UTC().Format("2006-01-02T15:04:05Z")
			}
			rows = append(rows, []string{
				cell(j.Job, maxJobWidth), cell(r.Slot, maxSlotWidth), cell(r.Node, maxNodeWidth),
				cell(shown, 24), cell(dur, 16), cell(exit, 8), cell(result, 16), r.Cmd,
			})
		}
	}
	if len(rows) > 1 {
		fmt.Fprintln(w)
		writeTable(w, width, rows)
	}
}

// printSchedules is the table of the jobs with a schedule: how many of
// their slots in the last 24 h went unrun, and the newest of those.
func printSchedules(w io.Writer, doc statusDoc, width int) {
	rows := [][]string{{"JOB", "MISSED", "NEWEST MISSED", "SCHEDULE"}}
	for _, j := range doc.Jobs {
		if j.Schedule == "" {
			continue
		}
		count, newest := strconv.Itoa(len(j.Missed)), ""
		switch {
		case j.scheduleErr != nil:
			count, newest = "?", "the schedule does not parse"
		case len(j.Missed) > 0:
			newest = j.Missed[0]
			if j.missedCapped {
				count += "+"
			}
		}
		rows = append(rows, []string{cell(j.Job, maxJobWidth), count, cell(newest, 30), j.Schedule})
	}
	if len(rows) > 1 {
		fmt.Fprintln(w)
		writeTable(w, width, rows)
	}
}

// writeTable lays rows out in columns two spaces apart; the last column is
// cut so that each line fits in width.
func writeTable(w io.Writer, width int, rows [][]string) {
	last := len(rows[0]) - 1
	colw := make([]int, last)
	for _, r := range rows {
		for i := range last {
			colw[i] = max(colw[i], utf8.RuneCountInString(r[i]))
		}
	}
	used := 0
	for _, n := range colw {
		used += n + 2
	}
	for _, r := range rows {
		var b strings.Builder
		for i := range last {
			b.WriteString(r[i])
			b.WriteString(strings.Repeat(" ", colw[i]-utf8.RuneCountInString(r[i])+2))
		}
		b.WriteString(cell(r[last], max(width-used, minCmdWidth)))
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// cell is s for one table cell at most n characters wide: cut with an
// ellipsis, on one line, and without control characters that a terminal
// would act on (records are data from ZooKeeper, not trusted text).
func cell(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return ' '
		case r < 0x20 || (r >= 0x7f && r <= 0x9f):
			return '?'
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	rs := []rune(s)
	return string(rs[:n-1]) + "…"
}
