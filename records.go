package main

// Run records: one persistent node per admitted run under
// /hacron/<cluster>/jobs/<job>/runs/, created by the admission Multi and
// completed when the run ends.

import (
	"encoding/json"
	"fmt"
	"os/user"
	"strconv"
	"time"
)

// runRecord is the data of a run record (hacron.md, "Details").
type runRecord struct {
	Job      string `json:"job"`
	Node     string `json:"node"`
	Slot     string `json:"slot"`
	Start    string `json:"start"`
	End      string `json:"end,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Result   string `json:"result,omitempty"`
	Token    int64  `json:"token"`
	UID      int    `json:"uid"`
	User     string `json:"user"`
}

// Results of a run.
const (
	resultOK      = "ok"
	resultFailed  = "failed"
	resultLost    = "lost"
	resultTimeout = "timeout"
	resultKilled  = "killed"
)

func (r runRecord) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // plain strings and numbers always encode
	}
	return b
}

// userName is the login name of uid, or the number when it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// jobPath is the node of a job under the cluster root.
func jobPath(root, job string) string { return fmt.Sprintf("%s/jobs/%s", root, job) }

// defaultSlot is the invocation time truncated to the minute, UTC.
func defaultSlot(now time.Time) string {
	return now.UTC().Truncate(time.Minute).Format(time.RFC3339)
}
