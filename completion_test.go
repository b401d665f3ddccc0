package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The completion scripts in dist/completion, run by the real shells where
// the machine has them: what a Tab at the end of each line offers.
var completionCases = []struct {
	line string
	want []string // all offered
	not  []string // none offered
}{
	{line: "hacron ", want: []string{"run", "agent", "state", "resign", "status", "check"}},
	{line: "hacron r", want: []string{"run", "resign"}, not: []string{"agent"}},
	{line: "hacron run --no", want: []string{"--no-overlap"}},
	{line: "hacron --log-level ", want: []string{"debug", "info", "warn", "error"}},
	{line: "hacron --log-level=w", want: []string{"warn"}},
	{line: "hacron state -", want: []string{"--json", "-q", "--zk"}, not: []string{"--name", "--hold"}},
	{line: "hacron --zk h1:2181 run --ti", want: []string{"--timeout"}},
	{line: "hacron --socket-group roo", want: []string{"root"}},
	// The job's own command line: a command, then that command's own.
	{line: "hacron run ech", want: []string{"echo"}},
	{line: "hacron run --timeout 5m -- ech", want: []string{"echo"}},
	{line: "hacron run -- echo hi --ti", not: []string{"--timeout"}},
}

// bashWords splits a line the way bash fills COMP_WORDS: at spaces, and
// '=' and ':' (in COMP_WORDBREAKS) as words of their own.
func bashWords(line string) []string {
	var words []string
	for _, f := range strings.Split(line, " ") {
		for f != "" {
			i := strings.IndexAny(f, "=:")
			if i < 0 {
				words = append(words, f)
				break
			}
			if i > 0 {
				words = append(words, f[:i])
			}
			words = append(words, f[i:i+1])
			f = f[i+1:]
		}
	}
	if strings.HasSuffix(line, " ") || strings.HasSuffix(line, "=") || strings.HasSuffix(line, ":") {
		words = append(words, "")
	}
	return words
}

func checkOffered(t *testing.T, shell, line string, got, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: %q<Tab> does not offer %q; offers %q", shell, line, w, got)
		}
	}
	for _, n := range not {
		if slices.Contains(got, n) {
			t.Errorf("%s: %q<Tab> offers %q", shell, line, n)
		}
	}
}

func shellOutput(t *testing.T, env []string, name string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

const bashHarness = `source /usr/share/bash-completion/bash_completion
source dist/completion/hacron.bash
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
shift
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_hacron
printf '%s\n' "${COMPREPLY[@]}"
`

func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	if _, err := os.Stat("/usr/share/bash-completion/bash_completion"); err != nil {
		t.Skip("bash-completion is not installed (it is what loads the script)")
	}
	for _, tc := range completionCases {
		args := append([]string{"-c", bashHarness, "bash", tc.line}, bashWords(tc.line)...)
		checkOffered(t, "bash", tc.line, shellOutput(t, nil, "bash", args...), tc.want, tc.not)
	}
}

func TestCompletionFish(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("fish is not installed")
	}
	home := t.TempDir() // no user configuration
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + home, "XDG_DATA_HOME=" + home}
	for _, tc := range completionCases {
		var got []string
		for _, l := range shellOutput(t, env, "fish", "-c", "source dist/completion/hacron.fish; complete -C $argv[1]", tc.line) {
			word, _, _ := strings.Cut(l, "\t")
			// fish offers "--log-level=warn" for "--log-level=w".
			if _, v, ok := strings.Cut(word, "="); ok && strings.Contains(tc.line[strings.LastIndex(tc.line, " ")+1:], "=") {
				word = v
			}
			got = append(got, word)
		}
		checkOffered(t, "fish", tc.line, got, tc.want, tc.not)
	}
}

// zshHarness types each line and a Tab into one interactive zsh on a
// pseudo terminal and prints every match the completion system was given,
// as "N match" for the Nth line. The markers are quoted apart so that the
// echo of the typed command does not match them, only its output.
const zshHarness = `zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D; PROMPT=''"
zpty -w z 'compadd () { local -a __hits; builtin compadd -O __hits "$@"; (( $#__hits )) && print -r -l -- "<HIT>"${^__hits}; builtin compadd "$@" }'
zpty -w z "echo '<REA''DY>'"
zpty -r z line '*<READY>*'
shift
n=0
for l in "$@"; do
  n=$((n + 1))
  zpty -n -w z "$l"$'\t'
  zpty -w z $'\C-u echo "<DO""NE>"'
  zpty -r z out '*<DONE>*'
  print -r -- "$out" | tr -d '\r' | grep -o '<HIT>[^<]*' | sed "s/<HIT>/$n /"
done
zpty -d z
`

func TestCompletionZsh(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("zsh is not installed")
	}
	dir, err := filepath.Abs("dist/completion")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	args := []string{"-f", "-c", zshHarness, "zsh", dir}
	for _, tc := range completionCases {
		args = append(args, tc.line)
	}
	got := make([][]string, len(completionCases))
	for _, l := range shellOutput(t, []string{"HOME=" + home, "ZDOTDIR=" + home}, "zsh", args...) {
		n, match, _ := strings.Cut(l, " ")
		i, err := strconv.Atoi(n)
		if err != nil || i < 1 || i > len(got) {
			t.Fatalf("zsh harness: %q", l)
		}
		got[i-1] = append(got[i-1], match)
	}
	for i, tc := range completionCases {
		checkOffered(t, "zsh", tc.line, got[i], tc.want, tc.not)
	}
}
