package runtimes

//go:generate go run ./cmd/gentable ../../README.md

import (
	"bytes"
	"errors"
	"strings"
)

// README markers around the generated section.
const (
	BeginMarker = "<!-- runtimes:begin -->"
	EndMarker   = "<!-- runtimes:end -->"
)

// Markdown renders the README section "Runtime safety table" from Table, markers
// excluded.
func Markdown() string {
	var b strings.Builder
	b.WriteString(`### Runtime safety table

A handler in ` + "`SigCgt`" + ` is not consent: most handlers belong to the runtime, not to the
application. oomhero names the runtime of every target process (from procfs only: the
exe link, comm, command line and mapped libraries, bounded reads, nothing inside the
container's root) and looks the signal up in this table:

- **safe**: the runtime installs no handler for it; the application's handler (or the
  default action) gets it, as ` + "`SigCgt`" + ` says. oomhero sends it.
- **dropped**: the runtime takes it and, unless the application asked for it, ignores it
  or only logs a line (a Go program that never called ` + "`signal.Notify`" + `). oomhero sends
  it and says once that it may be dropped.
- **harmful**: the runtime acts on it for its own purposes (crash, debugger, reload,
  restart, log reopening, dump files, shutdown, exit). oomhero refuses it unless the
  container declares the signal or ` + "`--allow runtime:SIGNAL`" + ` opts the runtime in.

The most specific row wins (a role over every role, an option over none). Runtimes
identified but without a row for a signal (` + "`dotnet`" + `, ` + "`php`" + `, ` + "`perl`" + `, and any
unknown program) are judged by ` + "`SigCgt`" + ` alone. Generated from ` + "`internal/runtimes`" + ` by
` + "`go run ./internal/runtimes/cmd/gentable`" + `; a test fails when this section and the code differ.

| Runtime | Role / option | Signal | Effect | Harm | oomhero default | Source |
|---|---|---|---|---|---|---|
`)
	for _, r := range table {
		role := r.Role
		if r.When != "" {
			if role != "" {
				role += ", "
			}
			role += "with " + r.When
		}
		if role == "" {
			role = "any"
		}
		def := r.Effect.Harm.Default()
		if r.Effect.Forwards {
			def += " (forwarder)"
		}
		cells := []string{r.Runtime, role, r.Signal, r.Effect.What, r.Effect.Harm.String(), def, r.Effect.Source}
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + cell(c) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// Section returns what lies between the markers of readme, or an error naming
// the missing marker.
func Section(readme []byte) (string, error) {
	i := bytes.Index(readme, []byte(BeginMarker))
	j := bytes.Index(readme, []byte(EndMarker))
	if i < 0 || j < 0 || j < i {
		return "", errors.New("README: markers " + BeginMarker + " ... " + EndMarker + " not found (or out of order)")
	}
	return strings.TrimPrefix(string(readme[i+len(BeginMarker):j]), "\n"), nil
}

// ReplaceSection returns readme with the text between the markers replaced by
// Markdown().
func ReplaceSection(readme []byte) ([]byte, error) {
	if _, err := Section(readme); err != nil {
		return nil, err
	}
	i := bytes.Index(readme, []byte(BeginMarker)) + len(BeginMarker)
	j := bytes.Index(readme, []byte(EndMarker))
	var out bytes.Buffer
	out.Write(readme[:i])
	out.WriteString("\n")
	out.WriteString(Markdown())
	out.Write(readme[j:])
	return out.Bytes(), nil
}
