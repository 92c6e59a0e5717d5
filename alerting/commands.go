// Commands to devices (docs/protocol.md "Commands"): the platform publishes
// a device.Command on the device's cmd topic and tracks it as sent ->
// acknowledged (the gateway's cmd/ack) -> confirmed (the device's next state,
// device.Confirms), or timed out and retried with the same id and a new
// expiry, and after CommandConfig.MaxTries marked failed. Each step is a
// history entry (channel "command") of the alert the command serves, so the
// alert shows whether, say, the gas valve closed.

package alerting

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// CommandConfig sets how commands are tracked. Durations are wall time
// (Config.Now).
type CommandConfig struct {
	// AckTimeout is how long a try waits for the gateway's ack; default 10 s.
	AckTimeout time.Duration
	// ConfirmTimeout is how long an accepted command waits for the device's
	// new state (device.Confirms) before the try counts as timed out;
	// default 30 s (zigbee2mqtt reports a valve's state within seconds).
	ConfirmTimeout time.Duration
	// MaxTries is how many times a command is sent (the first and the
	// retries, same id, new expiry) before it is marked failed; default 3.
	MaxTries int
	// TTL is each try's expiry after its send time (device.Command.Expires);
	// default 60 s: a valve closed minutes late may be worse than never.
	TTL time.Duration
	// Tick is how often the timeouts are checked; default 1 s.
	Tick time.Duration
}

func (c CommandConfig) withDefaults() CommandConfig {
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = 30 * time.Second
	}
	if c.MaxTries <= 0 {
		c.MaxTries = 3
	}
	if c.TTL <= 0 {
		c.TTL = time.Minute
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	return c
}

// CommandState is where a tracked command is.
type CommandState string

// The states of a tracked command.
const (
	CommandSent         CommandState = "sent"         // published, no ack yet
	CommandAcknowledged CommandState = "acknowledged" // the gateway accepted it; waiting for the new state
	CommandConfirmed    CommandState = "confirmed"    // the device's state shows it took effect
	CommandFailed       CommandState = "failed"       // refused, or no ack/confirmation after MaxTries
)

// CommandStatus is a tracked command as [Service.Commands] returns it.
type CommandStatus struct {
	ID      string
	Site    string
	Device  string
	Action  device.Action
	AlertID int64 // 0: not tied to an alert
	Actor   string
	State   CommandState
	Tries   int
	// Detail says why it failed or how it was confirmed.
	Detail  string
	Updated time.Time
}

type trackedCommand struct {
	CommandStatus
	params   map[string]any
	deadline time.Time // of the current try (ack or confirmation)
}

// commander holds the commands in flight and the valves seen per site.
type commander struct {
	cfg CommandConfig

	mu      sync.Mutex
	publish func(topic string, b []byte) error // set by commandLoop
	byID    map[string]*trackedCommand
	valves  map[string]map[string]bool // site -> valve devices seen (a valve_open reading)
	// The programme rules' state (facility.go, location.go, medication.go).
	limits map[string]*limitState // device + "\x00" + field
	tracks map[string][]position  // device -> last positions, oldest first
	doses  *doseState
	// visitsRaised: resident + "|" + period already raised; visitsSince:
	// the first visit check.
	visitsRaised map[string]bool
	visitsSince  time.Time
	doors        map[string]*doorState // contact device -> state (doors.go)
	unknown      *unknownTracker       // devices heard but not registered (unknown.go)
	swept        time.Time             // last expireCommands (commandqueue.go)
	reassured    map[string]time.Time  // device -> last call_acknowledged re-sent (localalarm.go)
}

func newCommander(c CommandConfig) *commander {
	return &commander{cfg: c.withDefaults(), byID: map[string]*trackedCommand{}, valves: map[string]map[string]bool{},
		limits: map[string]*limitState{}, tracks: map[string][]position{}, doses: newDoseState(), visitsRaised: map[string]bool{}, doors: map[string]*doorState{},
		unknown: newUnknownTracker()}
}

// SendCommand sends action (with params, see docs/protocol.md) to device
// dev of site and tracks it; alertID (0: none) is the alert whose history
// records each step, actor who asked (a staff id, or "system"). It returns
// the command's id. Errors: an invalid command (device.Command.Validate),
// an action the device's kind does not have, a publish failure (the
// command is then retried like an unanswered one). Before Run's command
// loop starts, the command is queued and sent at its first tick. This is the operation a dashboard calls for "close valve",
// "silence siren" and "test alarm".
func (s *Service) SendCommand(ctx context.Context, site, dev string, action device.Action, params map[string]any, alertID int64, actor string) (string, error) {
	id, err := newCommandID()
	if err != nil {
		return "", err
	}
	return s.sendCommand(ctx, id, site, dev, action, params, alertID, actor)
}

// sendCommand is SendCommand with the command's id given (a requested
// command's, commandqueue.go). Refusals before sending wrap errBadCommand.
func (s *Service) sendCommand(ctx context.Context, id, site, dev string, action device.Action, params map[string]any, alertID int64, actor string) (string, error) {
	if kind := s.kindOf(dev); kind != "" {
		ok := false
		for _, a := range device.Actions(device.Kind(kind)) {
			ok = ok || a == action
		}
		if !ok {
			return "", fmt.Errorf("device %s (%s) has no action %q: %w", dev, kind, action, errBadCommand)
		}
	}
	now := s.cfg.Now()
	if _, err := device.NewCommand(id, dev, action, params, now, s.cmds.cfg.TTL); err != nil {
		return "", fmt.Errorf("%w: %w", errBadCommand, err)
	}
	if actor == "" {
		actor = ActorSystem
	}
	tc := &trackedCommand{CommandStatus: CommandStatus{ID: id, Site: site, Device: dev, Action: action, AlertID: alertID, Actor: actor},
		params: params}
	s.cmds.mu.Lock()
	ready := s.cmds.publish != nil
	if !ready {
		// A gas event handled from the persistent session just before the
		// command loop started: queued, sent at the loop's first tick.
		tc.State, tc.Updated = CommandSent, now
		s.cmds.byID[id] = tc
	}
	s.cmds.mu.Unlock()
	if !ready {
		s.recordCommand(ctx, tc.CommandStatus)
		return id, s.commandHistory(ctx, tc.CommandStatus, fmt.Sprintf("command %s %s to %s: queued until the broker connection is up", action, id, dev))
	}
	s.cmds.mu.Lock()
	s.cmds.byID[id] = tc
	s.cmds.mu.Unlock()
	if err := s.sendTry(ctx, tc); err != nil {
		return id, err
	}
	return id, nil
}

func newCommandID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("command id: %w", err)
	}
	return "c-" + hex.EncodeToString(b), nil
}

// sendTry publishes the next try of tc (same id, new ts and expiry) and
// records it.
func (s *Service) sendTry(ctx context.Context, tc *trackedCommand) error {
	now := s.cfg.Now()
	s.cmds.mu.Lock()
	tc.Tries++
	tc.State = CommandSent
	tc.Updated = now
	tc.deadline = now.Add(s.cmds.cfg.AckTimeout)
	try, pub := tc.Tries, s.cmds.publish
	cmd, err := device.NewCommand(tc.ID, tc.Device, tc.Action, tc.params, now, s.cmds.cfg.TTL)
	st := tc.CommandStatus
	s.cmds.mu.Unlock()
	if err != nil {
		return err
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("encode command %s: %w", cmd.ID, err)
	}
	// Recorded before the publish, so the history reads in order even when
	// the device answers at once.
	detail := fmt.Sprintf("command %s %s to %s: sent (try %d of %d, expires %s)", st.Action, st.ID, st.Device, try,
		s.cmds.cfg.MaxTries, time.UnixMilli(cmd.Expires).UTC().Format(time.RFC3339))
	s.log.Info("alerting: "+detail, "actor", st.Actor, "alert", st.AlertID)
	s.recordCommand(ctx, st) // commandqueue.go
	if err := s.commandHistory(ctx, st, detail); err != nil {
		return err
	}
	if err := pub(device.CommandTopic(s.cfg.Root, tc.Site, tc.Device), b); err != nil {
		// The try times out and is retried like an unanswered one.
		detail = fmt.Sprintf("command %s %s to %s: publish failed (try %d of %d): %v", st.Action, st.ID, st.Device, try, s.cmds.cfg.MaxTries, err)
		s.log.Warn("alerting: " + detail)
		if herr := s.commandHistory(ctx, st, detail); herr != nil {
			return herr
		}
		return err
	}
	return nil
}

// commandHistory records detail in the history of the command's alert.
func (s *Service) commandHistory(ctx context.Context, st CommandStatus, detail string) error {
	if st.AlertID == 0 {
		return nil
	}
	return s.durably(ctx, "history of command "+st.ID, func(ctx context.Context) error {
		err := s.m.Comment(ctx, st.AlertID, st.Actor, "command", detail)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
}

// setState moves tc to state (unless it is final already) and records it.
func (s *Service) setState(ctx context.Context, id string, from []CommandState, to CommandState, detail string) error {
	s.cmds.mu.Lock()
	tc := s.cmds.byID[id]
	if tc == nil {
		s.cmds.mu.Unlock()
		return nil
	}
	ok := false
	for _, f := range from {
		ok = ok || tc.State == f
	}
	if !ok {
		s.cmds.mu.Unlock()
		return nil
	}
	now := s.cfg.Now()
	tc.State, tc.Detail, tc.Updated = to, detail, now
	if to == CommandAcknowledged {
		tc.deadline = now.Add(s.cmds.cfg.ConfirmTimeout)
	}
	st := tc.CommandStatus
	s.cmds.mu.Unlock()
	text := fmt.Sprintf("command %s %s to %s: %s", st.Action, st.ID, st.Device, to)
	if detail != "" {
		text += ": " + detail
	}
	s.log.Info("alerting: " + text)
	s.recordCommand(ctx, st) // commandqueue.go
	return s.commandHistory(ctx, st, text)
}

// commandAck applies a cmd/ack message (hook in handle).
func (s *Service) commandAck(ctx context.Context, t device.Topic, payload []byte) error {
	ack, err := device.DecodeCommandAck(payload, s.cfg.Limits)
	if err == nil {
		err = device.CheckTopicDevice(t, ack.Device)
	}
	if err != nil {
		s.reject(t.String(), string(device.ChanCommandAck), err)
		return nil
	}
	s.cmds.mu.Lock()
	tc := s.cmds.byID[ack.ID]
	var act device.Action
	if tc != nil {
		act = tc.Action
	}
	s.cmds.mu.Unlock()
	if tc == nil {
		return nil // another replica's, or one from before a restart
	}
	why := string(ack.Status)
	if ack.Reason != "" {
		why += " (" + ack.Reason + ")"
	}
	if ack.Error != "" {
		why += ": " + ack.Error
	}
	switch ack.Status {
	case device.AckAccepted:
		if _, _, ok := device.Confirms(act); !ok && act != device.ActionAlarmTest {
			return s.setState(ctx, ack.ID, []CommandState{CommandSent}, CommandConfirmed, "acknowledged by the gateway ("+why+")")
		}
		if tc.snapshot(&s.cmds.mu).State == CommandConfirmed {
			// The new state (readings session) came before the ack
			// (events session): record the ack all the same.
			return s.commandHistory(ctx, tc.snapshot(&s.cmds.mu), fmt.Sprintf("command %s %s to %s: acknowledged: gateway answered %s (after the confirmation)",
				act, ack.ID, ack.Device, why))
		}
		return s.setState(ctx, ack.ID, []CommandState{CommandSent}, CommandAcknowledged, "gateway answered "+why)
	case device.AckRefused:
		return s.setState(ctx, ack.ID, []CommandState{CommandSent, CommandAcknowledged}, CommandFailed,
			"refused by the gateway, not retried: "+why+failedEffect(act))
	default: // failed: retried at the next tick while tries remain
		s.cmds.mu.Lock()
		if tc.State == CommandSent {
			tc.deadline = s.cfg.Now() // retry now
			tc.Detail = why
		}
		s.cmds.mu.Unlock()
		return s.commandHistory(ctx, tc.snapshot(&s.cmds.mu), fmt.Sprintf("command %s %s to %s: gateway answered %s", act, ack.ID, ack.Device, why))
	}
}

func (tc *trackedCommand) snapshot(mu *sync.Mutex) CommandStatus {
	mu.Lock()
	defer mu.Unlock()
	return tc.CommandStatus
}

// failedEffect says in words what a failed command means for the alert.
func failedEffect(a device.Action) string {
	switch a {
	case device.ActionValveClose:
		return "; the valve is NOT confirmed closed"
	case device.ActionSirenSilence:
		return "; the siren is NOT confirmed silent"
	}
	return ""
}

// commandObserved confirms the commands to dev that a reading (field =
// value at) or event shows took effect, and remembers valves per site
// (hook in afterTelemetry and event).
func (s *Service) commandObserved(ctx context.Context, site, dev string, values map[string]float64, ev device.EventType) error {
	s.cmds.mu.Lock()
	if _, ok := values["valve_open"]; ok {
		if s.cmds.valves[site] == nil {
			s.cmds.valves[site] = map[string]bool{}
		}
		s.cmds.valves[site][dev] = true
	}
	var done []string
	var how []string
	for id, tc := range s.cmds.byID {
		if tc.Device != dev || (tc.State != CommandSent && tc.State != CommandAcknowledged) {
			continue
		}
		field, want, ok := device.Confirms(tc.Action)
		if ok {
			if v, has := values[field]; has && v == want {
				done, how = append(done, id), append(how, fmt.Sprintf("the device reports %s = %g", field, want))
				continue
			}
		}
		switch {
		case ev == device.EventValveClosed && tc.Action == device.ActionValveClose,
			ev == device.EventValveOpened && tc.Action == device.ActionValveOpen,
			ev == device.EventAlarmTest && tc.Action == device.ActionAlarmTest:
			done, how = append(done, id), append(how, "the device reports event "+string(ev))
		}
	}
	s.cmds.mu.Unlock()
	for i, id := range done {
		if err := s.setState(ctx, id, []CommandState{CommandSent, CommandAcknowledged}, CommandConfirmed, how[i]); err != nil {
			return err
		}
	}
	return nil
}

// commandLoop publishes on client, and retries or fails the commands whose
// try timed out, every CommandConfig.Tick until ctx ends (started by Run).
func (s *Service) commandLoop(ctx context.Context, client paho.Client) {
	s.cmds.mu.Lock()
	s.cmds.publish = func(topic string, b []byte) error {
		return mqttconn.Wait(ctx, client.Publish(topic, 1, false, b), 10*time.Second, "publish command")
	}
	s.cmds.mu.Unlock()
	tick := time.NewTicker(s.cmds.cfg.Tick)
	defer tick.Stop()
	every := s.cfg.Programme.Every
	if every <= 0 {
		every = 30 * time.Second
	}
	prog := time.NewTicker(every)
	defer prog.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.sendQueued(ctx) // commands requested by dashboards elsewhere (commandqueue.go)
			if err := s.commandTimeouts(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("alerting: command timeouts", "err", err)
			}
			if err := s.doorTimeouts(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("alerting: door timeouts", "err", err)
			}
		case <-prog.C:
			if err := s.tickProgramme(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("alerting: programme rules (dose_missed, visits)", "err", err)
			}
		}
	}
}

// tickProgramme runs the scheduled programme rules at Config.Now.
func (s *Service) tickProgramme(ctx context.Context) error {
	if s.cfg.Programme.Residents == nil {
		return nil
	}
	rs, err := s.cfg.Programme.Residents(ctx)
	if err != nil {
		return fmt.Errorf("list residents: %w", err)
	}
	now := s.cfg.Now()
	if err := s.tickDoses(ctx, rs, now); err != nil {
		return err
	}
	return s.tickVisits(ctx, rs, now)
}

// commandTimeouts retries each try past its deadline, or marks it failed
// after MaxTries.
func (s *Service) commandTimeouts(ctx context.Context) error {
	now := s.cfg.Now()
	var retry, fail []*trackedCommand
	s.cmds.mu.Lock()
	for id, tc := range s.cmds.byID {
		switch tc.State {
		case CommandConfirmed, CommandFailed:
			if now.Sub(tc.Updated) > time.Hour {
				delete(s.cmds.byID, id)
			}
			continue
		}
		if now.Before(tc.deadline) {
			continue
		}
		if tc.Tries < s.cmds.cfg.MaxTries {
			retry = append(retry, tc)
		} else {
			fail = append(fail, tc)
		}
	}
	s.cmds.mu.Unlock()
	for _, tc := range fail {
		st := tc.snapshot(&s.cmds.mu)
		what := "no acknowledgement"
		if st.State == CommandAcknowledged {
			what = "acknowledged but the device's new state never came"
		}
		if err := s.setState(ctx, st.ID, []CommandState{CommandSent, CommandAcknowledged}, CommandFailed,
			fmt.Sprintf("%s after %d tries%s", what, st.Tries, failedEffect(st.Action))); err != nil {
			return err
		}
	}
	for _, tc := range retry {
		if err := s.sendTry(ctx, tc); err != nil && ctx.Err() != nil {
			return err
		}
	}
	return nil
}

// Commands returns the tracked commands of alert alertID (0: all), oldest
// first by id order of sending. Commands are kept in memory an hour after
// they end; their steps stay in the alert's history.
func (s *Service) Commands(alertID int64) []CommandStatus {
	s.cmds.mu.Lock()
	defer s.cmds.mu.Unlock()
	var out []CommandStatus
	for _, tc := range s.cmds.byID {
		if alertID == 0 || tc.AlertID == alertID {
			out = append(out, tc.CommandStatus)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
