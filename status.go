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
	"text/tabwriter"
	"time"

	"github.com/go-zookeeper/zk"
)

type statusCmd struct {
	JSON bool `name:"json" help:"Print the status as JSON."`
}

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
	Job  string      `json:"job"`
	Runs []runRecord `json:"runs"`
}

func (s *statusCmd) Run(ctx context.Context, g *globals) error {
	log, err := newLogger(g, slog.LevelWarn)
	if err != nil {
		return err
	}
	zc, err := dialZK(ctx, g.zkConfig(), log)
	if err != nil {
		return err
	}
	defer zc.Close()
	doc, err := readStatus(zc, g.Cluster)
	if err != nil {
		return err
	}
	if s.JSON {
		b, _ := json.MarshalIndent(doc, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	printStatus(os.Stdout, doc)
	return nil
}

// readMember reads a candidate's node data; hostile or foreign data is an
// error, never a crash.
func readMember(conn *zk.Conn, path string) (memberInfo, *zk.Stat, error) {
	var m memberInfo
	data, st, err := conn.Get(path)
	if err != nil {
		return m, nil, err
	}
	if len(data) > maxMemberData {
		return m, st, errors.New("member data too large")
	}
	return m, st, json.Unmarshal(data, &m)
}

func readStatus(zc *zkClient, cluster string) (statusDoc, error) {
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
	slices.Sort(jobs)
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
		for _, n := range names {
			data, st, err := conn.Get(runsPath + "/" + n)
			if err != nil {
				continue
			}
			r, err := decodeRunRecord(data)
			if err != nil {
				continue // not a record of ours
			}
			recs = append(recs, rec{r, st.Czxid})
		}
		slices.SortFunc(recs, func(a, b rec) int { return cmp.Compare(b.czxid, a.czxid) })
		jr := jobRuns{Job: job, Runs: []runRecord{}}
		for _, r := range recs {
			jr.Runs = append(jr.Runs, r.r)
		}
		doc.Jobs = append(doc.Jobs, jr)
	}
	return doc, nil
}

func printStatus(w io.Writer, doc statusDoc) {
	fmt.Fprintf(w, "cluster %s, %s mode", doc.Cluster, doc.Mode)
	if doc.Leader != "" {
		fmt.Fprintf(w, ", active %s, fencing token %d", doc.Leader, doc.Token)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(doc.Members) > 0 {
		fmt.Fprintln(tw, "\nMEMBER\tSINCE\tACTIVE")
		for _, m := range doc.Members {
			active := ""
			if m.Active {
				active = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Node, m.Since, active)
		}
	}
	if len(doc.Jobs) > 0 {
		fmt.Fprintln(tw, "\nJOB\tSLOT\tNODE\tSTART\tEND\tEXIT\tRESULT\tDURATION")
		for _, j := range doc.Jobs {
			for _, r := range j.Runs {
				exit, dur := "", ""
				if r.ExitCode != nil {
					exit = fmt.Sprint(*r.ExitCode)
				}
				if s, err := time.Parse(time.RFC3339, r.Start); err == nil {
					if e, err := time.Parse(time.RFC3339, r.End); err == nil {
						dur = e.Sub(s).Round(time.Millisecond).String()
					}
				}
				end, result := r.End, r.Result
				if end == "" {
					end, result = "-", "running"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Job, r.Slot, r.Node, r.Start, end, exit, result, dur)
			}
		}
	}
	tw.Flush()
}
