package main

import (
	"encoding/json"
	"fmt"
	"hacron/internal/wire"
	"strings"
	"testing"
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
		// What was read, written back with quotes, reads the same.
		var back strings.Builder
		for _, v := range c.values {
			value := v.value
			if v.key == "mode" {
				value = map[string]string{"true": "direct", "false": "agent"}[value]
			}
			fmt.Fprintf(&back, "%s = \"%s\"\n", v.key, value)
		}
		again := &config{path: "back.conf", values: map[string]configValue{}}
		if err := again.parse(strings.NewReader(back.String())); err != nil {
			t.Fatalf("written back %q: %v", back.String(), err)
		}
		for flag, v := range c.values {
			if again.values[flag].value != v.value {
				t.Errorf("%s: read %q, written back and read again %q", v.key, v.value, again.values[flag].value)
			}
		}
	})
}

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
		var req wire.Request
		if err := wire.Decode(line, &req); err == nil {
			if req.V != wire.Version {
				t.Errorf("accepted version %d", req.V)
			}
			// What was accepted is what the peer meant: encoded again, it
			// decodes to the same request.
			b, _ := json.Marshal(req)
			var again wire.Request
			if err := wire.Decode(b, &again); err != nil {
				t.Fatalf("re-encoded %s: %v", b, err)
			}
			if b2, _ := json.Marshal(again); string(b2) != string(b) {
				t.Errorf("round trip changed %s into %s", b, b2)
			}
		}
		var rep wire.Reply
		if err := wire.Decode(line, &rep); err == nil && rep.V != wire.Version {
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
		// A record hacron accepts, it can write and read again unchanged
		// (JSON escaping may grow a record past the bound: not ours).
		if len(r.encode()) > maxRecordData {
			return
		}
		again, err := decodeRunRecord(r.encode())
		if err != nil || string(again.encode()) != string(r.encode()) {
			t.Errorf("round trip of %+v: %+v, %v", r, again, err)
		}
		// A record that decodes prints.
		printStatus(discardWriter{}, statusDoc{Cluster: "c", Mode: "agent", Jobs: []jobRuns{{Job: r.Job, Runs: []runRecord{r}}}}, 80)
	})
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
