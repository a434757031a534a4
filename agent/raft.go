package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/distribworks/dkron/v4/dkron"
	"github.com/ryanuber/columnize"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// raftCommand is `dkron raft list-peers|remove-peer` as Dkron has them, dialling
// with the node's certificate when its dkron.yml names one.
func raftCommand() *cobra.Command {
	var rpcAddr, configFile string
	var client dkron.DkronGRPCClient
	command := &cobra.Command{
		Use:   "raft [command]",
		Short: "Raft operations over the agent's gRPC (with the node's certificate)",
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			address, err := dkron.ParseSingleIPTemplate(rpcAddr)
			if err != nil {
				return err
			}
			rpcAddr = address
			client, err = grpcClient(configFile)
			return err
		},
	}
	command.PersistentFlags().StringVar(&rpcAddr, "rpc-addr", "{{ GetPrivateIP }}:6868", "gRPC address of the agent.")
	command.PersistentFlags().StringVar(&configFile, "config", "/etc/dkron/dkron.yml",
		"the node's config file, for its tls section (none there: a plain connection)")

	list := &cobra.Command{
		Use:   "list-peers",
		Short: "List the Raft peers",
		RunE: func(cmd *cobra.Command, args []string) error {
			reply, err := client.RaftGetConfiguration(rpcAddr)
			if err != nil {
				return err
			}
			rows := []string{"Node|ID|Address|State|Voter"}
			for _, s := range reply.Servers {
				state := "follower"
				if s.Leader {
					state = "leader"
				}
				rows = append(rows, fmt.Sprintf("%s|%s|%s|%s|%v", s.Node, s.Id, s.Address, state, s.Voter))
			}
			fmt.Println(columnize.SimpleFormat(rows))
			return nil
		},
	}
	var peerID string
	remove := &cobra.Command{
		Use:   "remove-peer",
		Short: "Remove a server from the Raft configuration",
		RunE: func(cmd *cobra.Command, args []string) error {
			if peerID == "" {
				return errors.New("--peer-id is required")
			}
			if err := client.RaftRemovePeerByID(rpcAddr, peerID); err != nil {
				return err
			}
			fmt.Println("Peer removed")
			return nil
		},
	}
	remove.Flags().StringVar(&peerID, "peer-id", "", "Remove a Dkron server with the given ID from the Raft configuration.")
	command.AddCommand(list, remove)
	return command
}

// grpcClient dials as the node whose config file is given: with its
// certificate when the file has a tls section, in plain otherwise (a node of a
// stack made before TLS, or no file at all, as Dkron's own command does).
func grpcClient(configFile string) (dkron.DkronGRPCClient, error) {
	logger := logrus.NewEntry(logrus.New())
	if _, err := os.Stat(configFile); errors.Is(err, fs.ErrNotExist) {
		return dkron.NewGRPCClient(nil, nil, logger), nil
	}
	v := viper.New()
	v.SetConfigFile(configFile)
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("config %s: %w", configFile, err)
	}
	security, err := loadSecurity(v)
	if err != nil || security == nil {
		return dkron.NewGRPCClient(nil, nil, logger), err
	}
	return dkron.NewGRPCClient(security.dialOption(), nil, logger), nil
}
