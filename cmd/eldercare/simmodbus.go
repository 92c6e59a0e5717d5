package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/firmware-sim/modbussim"
)

// newSimModbusCmd serves emulated Modbus devices (XY-MD02, Senseair S8,
// Eastron SDM120) for a gateway to poll.
func newSimModbusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "modbus",
		Short: "Serve emulated Modbus devices (xy-md02, senseair-s8, sdm120) over Modbus TCP or RTU over TCP, with faults on demand",
		Long: `modbus serves emulated Modbus devices on one TCP port, like a Modbus TCP
device or a serial-to-Ethernet converter with several slaves on its bus.

  eldercare sim modbus --listen 127.0.0.1:1502 --device xy-md02 --slave 1
  eldercare sim modbus --device xy-md02,senseair-s8@2,sdm120@3 --framing rtu-over-tcp
  eldercare sim modbus --device senseair-s8 --set input:3=65535          # an out-of-range CO2
  eldercare sim modbus --device xy-md02 --fault delay:1:3s --fault-every 30s

Registers hold the register maps' plausible values (see docs/modbus.md)
until --set changes them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, log, err := loadSettingsAndLogger(cmd)
			if err != nil {
				return err
			}
			var framing modbussim.Framing
			switch s.String("framing") {
			case "tcp":
				framing = modbussim.TCP
			case "rtu-over-tcp":
				framing = modbussim.RTUOverTCP
			default:
				return fmt.Errorf("--framing %q: want tcp or rtu-over-tcp", s.String("framing"))
			}
			srv := modbussim.New(framing, log)
			base := s.Int("slave")
			var first byte
			for i, spec := range s.v.GetStringSlice("device") {
				model, slave := spec, base+i
				if m, id, ok := strings.Cut(spec, "@"); ok {
					model = m
					if slave, err = strconv.Atoi(id); err != nil {
						return fmt.Errorf("--device %s: slave id %q is not a number", spec, id)
					}
				}
				if slave < 1 || slave > 247 {
					return fmt.Errorf("--device %s: slave %d is outside 1-247", spec, slave)
				}
				if err := srv.AddModel(model, byte(slave)); err != nil {
					return fmt.Errorf("--device %s: %w", spec, err)
				}
				if i == 0 {
					first = byte(slave)
				}
			}
			if first == 0 {
				return fmt.Errorf("--device is required: one or more of %s", strings.Join(modbussim.Models, ", "))
			}
			for _, set := range s.v.GetStringSlice("set") {
				if err := applySet(srv, first, set); err != nil {
					return fmt.Errorf("--set %s: %w", set, err)
				}
			}
			faults := s.v.GetStringSlice("fault")
			for _, f := range faults {
				if err := applyFault(srv, f); err != nil {
					return fmt.Errorf("--fault %s: %w", f, err)
				}
			}
			ln, err := listen("--listen", s.String("listen"))
			if err != nil {
				return err
			}
			log.Info("modbus simulator listening", "addr", ln.Addr().String(), "framing", s.String("framing"), "slaves", fmt.Sprint(slaveInts(srv.Slaves())))
			ctx := cmd.Context()
			if every := s.Duration("fault-every"); every > 0 && len(faults) > 0 {
				go repeatFaults(ctx, srv, faults, every)
			}
			return srv.Run(ctx, ln)
		},
	}
	f := cmd.Flags()
	f.String("listen", "127.0.0.1:1502", "TCP address host:port to serve on")
	f.StringSlice("device", nil, "emulated devices, comma-separated: xy-md02, senseair-s8 or sdm120, each optionally @slave (e.g. sdm120@3); required")
	f.Int("slave", 1, "slave (unit) id of the first --device without @slave; the next ones count up from it, 1-247")
	f.String("framing", "tcp", "framing: tcp (Modbus TCP, MBAP header) or rtu-over-tcp (RTU frames with CRC, as a serial-to-Ethernet converter passes them)")
	f.StringSlice("set", nil, "register values to set, [slave/]table:address=value with table input, holding, input-f32 or holding-f32, e.g. input:3=65535 or 2/input-f32:0=231.5 (slave: the first device's)")
	f.StringSlice("fault", nil, "faults for the next replies: delay:N:D (N replies late by D), exception:N:CODE (exception code 1-255), reset:N (close the connection), txid:N (wrong transaction id)")
	f.Duration("fault-every", 0, "inject --fault again at this interval (0: once, at start)")
	return cmd
}

// applySet parses [slave/]table:address=value.
func applySet(srv *modbussim.Server, slave byte, spec string) error {
	if sl, rest, ok := strings.Cut(spec, "/"); ok {
		n, err := strconv.Atoi(sl)
		if err != nil || n < 1 || n > 247 {
			return fmt.Errorf("slave %q: want 1-247", sl)
		}
		slave, spec = byte(n), rest
	}
	tab, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return fmt.Errorf("want table:address=value")
	}
	as, vs, ok := strings.Cut(rest, "=")
	if !ok {
		return fmt.Errorf("want table:address=value")
	}
	addr, err := strconv.ParseUint(as, 0, 16)
	if err != nil {
		return fmt.Errorf("address %q: %w", as, err)
	}
	table := modbussim.InputRegisterTable
	if strings.HasPrefix(tab, "holding") {
		table = modbussim.HoldingRegisterTable
	} else if !strings.HasPrefix(tab, "input") {
		return fmt.Errorf("table %q: want input, holding, input-f32 or holding-f32", tab)
	}
	if strings.HasSuffix(tab, "-f32") {
		v, err := strconv.ParseFloat(vs, 32)
		if err != nil {
			return fmt.Errorf("value %q: %w", vs, err)
		}
		return srv.SetFloat32(slave, table, uint16(addr), float32(v))
	}
	v, err := strconv.ParseUint(vs, 0, 16)
	if err != nil {
		return fmt.Errorf("value %q: want 0-65535: %w", vs, err)
	}
	return srv.SetRegister(slave, table, uint16(addr), uint16(v))
}

// applyFault parses and injects one fault spec.
func applyFault(srv *modbussim.Server, spec string) error {
	parts := strings.Split(spec, ":")
	n := 1
	if len(parts) > 1 {
		var err error
		if n, err = strconv.Atoi(parts[1]); err != nil || n < 1 {
			return fmt.Errorf("count %q: want 1 or more", parts[1])
		}
	}
	switch {
	case parts[0] == "delay" && len(parts) == 3:
		d, err := time.ParseDuration(parts[2])
		if err != nil {
			return err
		}
		srv.DelayNext(n, d)
	case parts[0] == "exception" && len(parts) == 3:
		code, err := strconv.ParseUint(parts[2], 0, 8)
		if err != nil || code == 0 {
			return fmt.Errorf("exception code %q: want 1-255", parts[2])
		}
		srv.ExceptionNext(n, byte(code))
	case parts[0] == "reset" && len(parts) <= 2:
		srv.ResetNext(n)
	case parts[0] == "txid" && len(parts) <= 2:
		srv.WrongTransactionIDNext(n)
	default:
		return fmt.Errorf("want delay:N:D, exception:N:CODE, reset[:N] or txid[:N]")
	}
	return nil
}

func repeatFaults(ctx context.Context, srv *modbussim.Server, faults []string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, f := range faults {
				applyFault(srv, f) // validated at start
			}
		}
	}
}

func slaveInts(ids []byte) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}
