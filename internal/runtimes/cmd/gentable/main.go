// Command gentable rewrites README.md's "Runtime safety table" section (between
// <!-- runtimes:begin --> and <!-- runtimes:end -->) from the table in
// internal/runtimes. Run it from the repository root:
//
//	go run ./internal/runtimes/cmd/gentable [README.md]
package main

import (
	"fmt"
	"os"

	"github.com/oomhero/oomhero/internal/runtimes"
)

func main() {
	name := "README.md"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	readme, err := os.ReadFile(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gentable:", err)
		os.Exit(1)
	}
	out, err := runtimes.ReplaceSection(readme)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gentable: %s: %v\n", name, err)
		os.Exit(1)
	}
	if err := os.WriteFile(name, out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gentable:", err)
		os.Exit(1)
	}
}
