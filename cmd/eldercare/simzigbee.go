package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/realdata"
)

// newSimZigbeeCmd replays real zigbee2mqtt payloads as zigbee2mqtt would
// publish them, for the gateway's zigbee2mqtt source.
func newSimZigbeeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "zigbee",
		Short: "Replay real zigbee2mqtt payloads (fall radars, SOS buttons, safety kit) on <base-topic>/<friendly name>, and answer /set commands",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, log, err := loadSettingsAndLogger(cmd)
			if err != nil {
				return err
			}
			file := s.String("file")
			if file == "" {
				dir, ok := realdata.Find()
				if !ok {
					return errors.New("sim zigbee: give --file, or set $ELDERCARE_REALDATA to the recordings directory (zigbee2mqtt/real_payloads_from_github_issues.jsonl)")
				}
				file = filepath.Join(dir, "zigbee2mqtt", "real_payloads_from_github_issues.jsonl")
			}
			n, err := firmwaresim.RunZigbee(cmd.Context(), firmwaresim.ZigbeeConfig{
				MQTTURL: s.String("mqtt"), BaseTopic: s.String("base-topic"), File: file,
				Interval: s.Duration("interval"), Repeat: s.Int("repeat"), Availability: s.Bool("availability"), Answer: s.Bool("answer"),
				PublishTimeout: s.Duration("publish-timeout"), Logger: log,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "published %d zigbee2mqtt messages from %s\n", n, file)
			return nil
		},
	}
	f := cmd.Flags()
	f.String("file", "", "JSON-lines file of real zigbee2mqtt messages (default: $ELDERCARE_REALDATA/zigbee2mqtt/real_payloads_from_github_issues.jsonl; the safety kit: real_payloads_safety_kit.jsonl, whose /set lines are skipped)")
	f.String("base-topic", "zigbee2mqtt", "zigbee2mqtt base topic the messages are published under")
	f.Duration("interval", time.Second, "time between two messages (0 = back to back)")
	f.Int("repeat", 1, "number of times the file is replayed")
	f.Bool("availability", false, `first publish {"state":"online"} retained on <base-topic>/<friendly name>/availability for every device of the file, as zigbee2mqtt does with availability on (default false)`)
	f.Bool("answer", false, "act as zigbee2mqtt for commands too: answer each <base-topic>/<friendly name>/set with the device's new state (a valve's state ON|OFF) and keep running after the replay until interrupted (default false)")
	f.Duration("publish-timeout", firmwaresim.DefaultPublishTimeout, "longest wait for the broker to acknowledge a connect or publish")
	return cmd
}
