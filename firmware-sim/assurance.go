package firmwaresim

import (
	"log/slog"
	"sync/atomic"

	"github.com/eldercare-iot/eldercare/device"
)

// HelpState is what a simulated call station (SOS button, pull cord)
// shows: after a call_acknowledged command (call assurance, UL 2560's
// "call assured" indication), "help is coming". Safe for concurrent use.
type HelpState struct {
	coming atomic.Bool
	last   atomic.Pointer[device.Command]
}

// Coming reports whether the station shows "help is coming".
func (h *HelpState) Coming() bool { return h != nil && h.coming.Load() }

// Last returns the last call_acknowledged command (nil: none yet).
func (h *HelpState) Last() *device.Command {
	if h == nil {
		return nil
	}
	return h.last.Load()
}

// reset clears the indicator: a new press is a new call.
func (h *HelpState) reset() {
	if h != nil {
		h.coming.Store(false)
	}
}

// helpHandler returns the command handler of a simulated call station: it
// accepts ping and call_acknowledged (logging "help is coming", setting
// state, then calling onHelp) and refuses anything else as unsupported.
func helpHandler(log *slog.Logger, dev string, kind device.Kind, state *HelpState, onHelp func(device.Command)) func(device.Command) error {
	return func(cmd device.Command) error {
		switch cmd.Action {
		case device.ActionPing:
			return nil
		case device.ActionCallAcknowledged:
			by, _ := cmd.Params["by"].(string)
			log.Info("sim: HELP IS COMING (call acknowledged)", "alert", cmd.Params["alert"], "type", cmd.Params["type"], "by", by)
			if state != nil {
				c := cmd
				state.last.Store(&c)
				state.coming.Store(true)
			}
			if onHelp != nil {
				onHelp(cmd)
			}
			return nil
		}
		return device.Refused(device.ReasonUnsupported, "a simulated %s does not accept %s", kind, cmd.Action)
	}
}
