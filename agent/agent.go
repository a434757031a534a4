package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	dkroncmd "github.com/distribworks/dkron/v4/cmd"
	"github.com/distribworks/dkron/v4/dkron"
	"github.com/distribworks/dkron/v4/logging"
	"github.com/hashicorp/go-plugin"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

func agentCommand() *cobra.Command {
	var configFile string
	command := &cobra.Command{
		Use:   "agent",
		Short: "Start a Dkron agent (with the stack's TLS when dkron.yml names it)",
		RunE: func(cmd *cobra.Command, args []string) error {
			config, err := loadConfig(configFile)
			if err != nil {
				return err
			}
			return runAgent(config)
		},
	}
	command.Flags().StringVar(&configFile, "config", "", "config file path")
	command.Flags().AddFlagSet(dkron.ConfigFlagSet())
	// The global viper, as Dkron's own command uses it: plugin discovery reads
	// the config file's folder from it.
	_ = viper.BindPFlags(command.Flags())
	return command
}

// loadConfig reads dkron.yml, DKRON_* variables and flags as `dkron agent`
// does: without --config, dkron.yml in /etc/dkron, ~/.dkron or ./config; none
// found, Dkron's defaults and the flags.
func loadConfig(configFile string) (*dkron.Config, error) {
	if configFile != "" {
		viper.SetConfigFile(configFile)
	} else {
		viper.SetConfigName("dkron")
		viper.AddConfigPath("/etc/dkron")
		viper.AddConfigPath("$HOME/.dkron")
		viper.AddConfigPath("./config")
	}
	viper.SetEnvPrefix("dkron")
	viper.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	viper.AutomaticEnv()
	logrus.AddHook(&logging.LogSplitter{})
	if err := viper.ReadInConfig(); err != nil {
		logrus.WithError(err).Info("No valid config found: Applying default values.")
	}
	config := dkron.DefaultConfig()
	if err := viper.Unmarshal(config); err != nil {
		return nil, fmt.Errorf("config %s: %w", configFile, err)
	}
	config.Tags = viper.GetStringMapString("tags")
	if cliTags := viper.GetStringSlice("tag"); len(cliTags) > 0 {
		tags, err := dkroncmd.UnmarshalTags(cliTags)
		if err != nil {
			return nil, err
		}
		config.Tags = tags
	}
	dkron.InitLogger(viper.GetString("log-level"), config.NodeName)
	return config, nil
}

func runAgent(config *dkron.Config) error {
	security, err := loadSecurity(viper.GetViper())
	if err != nil {
		return err
	}
	access, err := loadAPIAccess(viper.GetViper(), security)
	if err != nil {
		return err
	}
	// Read once: jobs, which inherit the agent's environment, get no secret of
	// the node's (they still run as its user; README, "Mutual TLS"). The API
	// token's variable is gone already (loadAPIAccess).
	for _, name := range []string{"DKRON_ENCRYPT", viper.GetString(keyEnvKey)} {
		if name != "" {
			_ = os.Unsetenv(name)
		}
	}
	discovered := &dkroncmd.Plugins{LogLevel: config.LogLevel, NodeName: config.NodeName}
	if err := discovered.DiscoverPlugins(); err != nil {
		return err
	}
	options := []dkron.AgentOption{dkron.WithPlugins(dkron.Plugins{
		Processors: discovered.Processors,
		Executors:  discovered.Executors,
	})}

	if security != nil {
		options = append(options, dkron.WithTransportCredentials(security.peerConfig()))
	}
	agent := dkron.NewAgent(config, options...)
	if security != nil {
		logger := logrus.WithField("node", config.NodeName)
		agent.GRPCClient = &redispatchClient{
			DkronGRPCClient: dkron.NewGRPCClient(security.dialOption(), agent, logger),
			agent:           agent,
			logger:          logger,
		}
		logger.Info("agent: mutual TLS on the RPC port (gRPC and Raft), the stack's CA only")
	}
	if access != nil {
		// Dkron fills the field with its own transport only when it is empty.
		agent.HTTPTransport = newAPITransport(agent, config, security, access)
	}
	if err := agent.Start(); err != nil {
		return err
	}
	if code := waitForSignals(agent); code != 0 {
		return fmt.Errorf("exit status: %d", code)
	}
	return nil
}

// waitForSignals is `dkron agent`'s signal handling: SIGHUP reloads tags,
// SIGTERM and interrupts leave gracefully once running jobs end.
func waitForSignals(agent *dkron.Agent) int {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	var received os.Signal
	for received == nil {
		select {
		case s := <-signals:
			if s == syscall.SIGHUP {
				reloadTags(agent)
				continue
			}
			received = s
		case err := <-agent.RetryJoinCh():
			fmt.Println("[ERR] agent: Retry join failed: ", err)
			return 1
		}
	}
	fmt.Printf("Caught signal: %v", received)
	if received != syscall.SIGTERM && received != os.Interrupt {
		return 1
	}
	logrus.Info("agent: Gracefully shutting down agent...")
	go func() {
		if err := agent.Stop(); err != nil {
			logrus.WithError(err).Error("agent: stopping")
		}
	}()
	for agent.GetRunningJobs() > 0 {
		logrus.Info("Waiting for jobs to finish...")
		time.Sleep(time.Second)
	}
	logrus.Info("No jobs left. Exiting.")
	plugin.CleanupClients()
	return 0
}

func reloadTags(agent *dkron.Agent) {
	fmt.Println("Reloading configuration...")
	if err := viper.ReadInConfig(); err != nil {
		logrus.WithError(err).Error("agent: reloading the config")
		return
	}
	agent.UpdateTags(viper.GetStringMapString("tags"))
}
