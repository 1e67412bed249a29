// Command argocd is a slim multi-call Argo CD binary for Barge's tests and sandbox:
// only the application-controller and the repo-server, chosen by the first
// argument or by the name the binary is called by.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
)

func main() {
	commands := map[string]func() *cobra.Command{
		"argocd-application-controller": appcontroller.NewCommand,
		"application-controller":        appcontroller.NewCommand,
		"argocd-repo-server":            reposerver.NewCommand,
		"repo-server":                   reposerver.NewCommand,
	}
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	newCommand, ok := commands[name]
	if !ok && len(args) > 0 {
		newCommand, ok = commands[args[0]]
		args = args[1:]
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "usage: argocd application-controller|repo-server [flags]")
		os.Exit(2)
	}
	// Upstream's main disables gRPC SRV lookups; that needs grpclb, which this
	// slim binary does not link, and nothing here resolves SRV records.
	command := newCommand()
	command.SetArgs(args)
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
