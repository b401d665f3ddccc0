// Package manpage writes man pages in roff (the man macros) from hacron's
// kong model and a little prose. Only the tests that keep dist/man in sync
// import it: nothing of it is linked into hacron.
//
// Prose is plain text with one piece of markup: `code` becomes bold, with
// its hyphens written as \- so that options can be searched and copied.
package manpage

import (
	"fmt"
	"strings"

	"github.com/alecthomas/kong"
)

// Page is a man page under construction.
type Page struct {
	b strings.Builder
}

// New starts a page: name and section as in hacron(1), the title of the
// manual it belongs to. The date is left out so that the page depends on
// the model alone.
func New(name, section, manual string) *Page {
	p := &Page{}
	fmt.Fprintf(&p.b, ".TH %s %s \"\" %q %q\n", strings.ToUpper(Escape(name)), section, "hacron", manual)
	return p
}

// Bytes is the page so far.
func (p *Page) Bytes() []byte { return []byte(p.b.String()) }

// Raw adds roff as it is.
func (p *Page) Raw(roff string) {
	p.b.WriteString(roff)
	if !strings.HasSuffix(roff, "\n") {
		p.b.WriteByte('\n')
	}
}

// Section starts a section (.SH); its title is upper-cased.
func (p *Page) Section(title string) {
	fmt.Fprintf(&p.b, ".SH %s\n", quote(strings.ToUpper(title)))
}

// Subsection starts a subsection (.SS); the title may use `code`.
func (p *Page) Subsection(title string) {
	fmt.Fprintf(&p.b, ".SS %s\n", quote(Text(title)))
}

// Para adds a paragraph of prose.
func (p *Page) Para(text string) {
	p.b.WriteString(".PP\n" + Text(text) + "\n")
}

// Item adds a tagged paragraph (.TP): a term, `code` allowed, and prose.
func (p *Page) Item(term, text string) {
	p.b.WriteString(".TP\n" + Text(term) + "\n" + Text(text) + "\n")
}

// Example adds lines shown as they are, indented.
func (p *Page) Example(lines ...string) {
	p.b.WriteString(".PP\n.RS 4\n.nf\n")
	for _, l := range lines {
		p.b.WriteString(escapeLine(strings.ReplaceAll(l, "-", `\-`)) + "\n")
	}
	p.b.WriteString(".fi\n.RE\n")
}

// Flags adds one tagged paragraph per visible flag: its help, its default,
// its environment variable, and whatever more says about it.
func (p *Page) Flags(flags []*kong.Flag, more func(*kong.Flag) string) {
	for _, f := range flags {
		if f.Hidden {
			continue
		}
		text := strings.TrimSpace(f.Help)
		if !strings.HasSuffix(text, ".") {
			text += "."
		}
		if f.HasDefault && f.Default != "" {
			text += " Default: `" + f.Default + "`."
		}
		for _, e := range f.Envs {
			text += " Environment: `" + e + "`."
		}
		if more != nil {
			if m := more(f); m != "" {
				text += " " + m
			}
		}
		p.b.WriteString(".TP\n" + FlagTerm(f) + "\n" + Text(text) + "\n")
	}
}

// FlagTerm is a flag as a term: \fB\-q\fR, \fB\-\-quiet\fR,
// \fB\-\-zk\fR=\fIHOSTS\fR.
func FlagTerm(f *kong.Flag) string {
	term := `\fB\-\-` + dashes(f.Name) + `\fR`
	if f.Short != 0 {
		term = `\fB\-` + string(f.Short) + `\fR, ` + term
	}
	if !f.IsBool() && !f.IsCounter() {
		term += `=\fI` + Escape(f.FormatPlaceHolder()) + `\fR`
	}
	return term
}

// Synopsis is a command's usage line in roff: hacron [global flags] run
// [flags] \-\- COMMAND ...
func Synopsis(n *kong.Node) string {
	var words []string
	var path []*kong.Node
	for c := n; c != nil; c = c.Parent {
		path = append([]*kong.Node{c}, path...)
	}
	for i, c := range path {
		words = append(words, `\fB`+Escape(c.Name)+`\fR`)
		if visible(c.Flags) {
			if i == 0 && len(path) > 1 {
				words = append(words, "[\\fIglobal flags\\fR]")
			} else {
				words = append(words, "[\\fIflags\\fR]")
			}
		}
	}
	for _, a := range n.Positional {
		w := `\fI` + Escape(strings.ToUpper(a.Name)) + `\fR`
		if a.IsSlice() {
			w += " ..."
		}
		if a.PassthroughMode != kong.PassThroughModeNone {
			w = `\fB\-\-\fR ` + w
		}
		if !a.Required {
			w = "[" + w + "]"
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

// Commands are the visible commands under n, in the model's order.
func Commands(n *kong.Node) []*kong.Node {
	var out []*kong.Node
	for _, c := range n.Children {
		if c.Type == kong.CommandNode && !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

// FindFlag is the flag called name anywhere in the model, and the command
// it belongs to (the application itself for a global flag).
func FindFlag(n *kong.Node, name string) (*kong.Flag, *kong.Node) {
	for _, f := range n.Flags {
		if f.Name == name {
			return f, n
		}
	}
	for _, c := range n.Children {
		if f, at := FindFlag(c, name); f != nil {
			return f, at
		}
	}
	return nil, nil
}

func visible(flags []*kong.Flag) bool {
	for _, f := range flags {
		if !f.Hidden {
			return true
		}
	}
	return false
}

// Text is prose in roff: escaped, `code` in bold.
func Text(s string) string {
	var b strings.Builder
	code := false
	for i, part := range strings.Split(s, "`") {
		if i > 0 {
			code = !code
		}
		if code {
			b.WriteString(`\fB` + dashes(Escape(part)) + `\fR`)
		} else {
			b.WriteString(Escape(part))
		}
	}
	return escapeLine(b.String())
}

// Escape makes text safe inside a roff line: backslashes are written \e.
func Escape(s string) string {
	return strings.ReplaceAll(s, `\`, `\e`)
}

// escapeLine keeps a line that starts with a control character as text.
func escapeLine(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

func dashes(s string) string { return strings.ReplaceAll(s, "-", `\-`) }

// quote wraps a macro argument with spaces in double quotes.
func quote(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + strings.ReplaceAll(s, `"`, `\(dq`) + `"`
	}
	return s
}
