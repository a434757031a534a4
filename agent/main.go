// Command dkron is the node program of this project: Dkron 4.0.5's agent, built
// from its Go module, with the stack's mutual TLS on the RPC port when the
// node's dkron.yml names the stack's certificates, and its HTTP API and UI over
// HTTPS with the stack's token when it names the token too (api.go).
//
// `dkron agent` and `dkron raft ...` are this file's; every other subcommand
// (`version`, `keygen`, ...) is Dkron's own, unchanged. Without a `tls:`
// section in dkron.yml the agent is Dkron's, byte for byte on the wire: that is
// how a stack made before TLS keeps running until it moves (README, "Mutual TLS").
package main

import (
	"fmt"
	"os"

	dkroncmd "github.com/distribworks/dkron/v4/cmd"
	"github.com/spf13/cobra"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "agent" && os.Args[1] != "raft") {
		dkroncmd.Execute()
		return
	}
	root := &cobra.Command{Use: "dkron", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(agentCommand(), raftCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
