package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Bad input never crashes and never runs a job. Seed corpora live under
// testdata/fuzz/<Target>/; `make test` runs each target briefly, `make fuzz`
// longer.

func FuzzConfigParse(f *testing.F) {
	for _, s := range []string{
		"zk = 127.0.0.1:2181\ncluster = x\n",
		"# comment\n; comment\ncluster_name\tnightly\nnice_level 19\n",
		"default_state = active\n",
		"mode = direct\n",
		"cluster = \"quoted\"\nnode = 'single'\n",
		"colour = blue\n",
		"session_timeout =\n",
		"=\n= = =\n\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c := &config{path: "fuzz.conf", values: map[string]configValue{}}
		if c.parse(strings.NewReader(text)) != nil {
			return
		}
		for flag, v := range c.values {
			if _, ok := configFlags[flag]; !ok {
				t.Errorf("value for unknown flag %q", flag)
			}
			if v.key == "default_state" {
				t.Errorf("default_state stored as a value")
			}
			if flag == "direct" && v.value != "true" && v.value != "false" {
				t.Errorf("mode became %q", v.value)
			}
		}
	})
}

// configFlags are the flags config keys may set.
var configFlags = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range configKeys {
		if f != "" {
			m[f] = true
		}
	}
	return m
}()

func FuzzSocketDecode(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"op":"run","job":"backup","slot":"2026-11-25T10:00:00Z","argv":["true"],"pgid":123,"kill_grace_ms":5000,"kill_grace_set":true}`,
		`{"v":1,"op":"state"}`,
		`{"v":1,"op":"resign","hold_ms":30000}`,
		`{"v":1,"op":"exit","exit_code":3,"result":"failed"}`,
		`{"v":2,"op":"state"}`,
		`{"v":1,"admitted":true,"token":5,"deadline_mono_ns":123}`,
		`{"v":1,"op":"run","job":"../x","slot":"a/b"}`,
		`{"v":1,"extra":1}`,
		`{}{}`,
		`[1,2]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var req request
		if err := decodeMsg(line, &req); err == nil {
			if req.V != protoVersion {
				t.Errorf("accepted version %d", req.V)
			}
			// What the agent checks before anything runs.
			if jobNameRE.MatchString(req.Job) && validSlot(req.Slot) == nil {
				if !utf8.ValidString(req.Job) || len(req.Job) > 128 {
					t.Errorf("job name %q passed validation", req.Job)
				}
			}
		}
		var rep reply
		if err := decodeMsg(line, &rep); err == nil && rep.V != protoVersion {
			t.Errorf("accepted reply version %d", rep.V)
		}
	})
}

func FuzzRunRecord(f *testing.F) {
	code := 0
	f.Add(runRecord{Job: "backup", Node: "node-a", Slot: "s", Start: "2026-11-25T10:00:00.000Z", End: "2026-11-25T10:00:01.000Z", ExitCode: &code, Result: "ok", Token: 7}.encode())
	f.Add([]byte(`{"job":"x"}`))
	f.Add([]byte(`{"job":"x","start":"y","exit_code":"nope"}`))
	f.Add([]byte("\x00\xff"))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRunRecord(data)
		if err != nil {
			return
		}
		if r.Job == "" || r.Start == "" {
			t.Errorf("accepted a record without job or start: %+v", r)
		}
		// A record that decodes prints.
		printStatus(discardWriter{}, statusDoc{Cluster: "c", Mode: "agent", Jobs: []jobRuns{{Job: r.Job, Runs: []runRecord{r}}}})
	})
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
