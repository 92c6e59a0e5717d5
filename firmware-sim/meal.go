package firmwaresim

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// MealTap is one card tap at a smart-meal terminal.
type MealTap struct {
	// Card is the resident's meal card id.
	Card string
	// Meal is breakfast, lunch, dinner or snack (device.Meals).
	Meal string
	// EatenPct is the share of the portion eaten, in % [0, 100].
	EatenPct float64
	// After is the wait before this tap (after the previous one).
	After time.Duration
}

// Validate reports every problem of t.
func (t MealTap) Validate() error {
	var errs []error
	if t.Card == "" {
		errs = append(errs, errors.New("card is empty"))
	}
	if !slices.Contains(device.Meals, t.Meal) {
		errs = append(errs, fmt.Errorf("meal %q is not %s", t.Meal, strings.Join(device.Meals, ", ")))
	}
	if !(t.EatenPct >= 0 && t.EatenPct <= 100) {
		errs = append(errs, fmt.Errorf("eaten %g %% is outside [0, 100] %%", t.EatenPct))
	}
	if t.After < 0 {
		errs = append(errs, fmt.Errorf("after %s is negative", t.After))
	}
	return errors.Join(errs...)
}

// ReadMealTaps parses a taps file: CSV lines "card,meal,eaten_pct[,after]"
// where eaten_pct is in % and after is the wait before the tap in Go
// duration syntax (e.g. 20s; default 0). Blank lines and lines starting
// with # are skipped, as is a first line "card,meal,eaten_pct...". Errors
// name the line.
func ReadMealTaps(r io.Reader) ([]MealTap, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	var taps []MealTap
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("taps: %w", err)
		}
		if first && len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "card") {
			continue
		}
		if len(rec) < 3 || len(rec) > 4 {
			return nil, fmt.Errorf("taps line %d: %d fields, want card,meal,eaten_pct[,after]", line, len(rec))
		}
		t := MealTap{Card: strings.TrimSpace(rec[0]), Meal: strings.TrimSpace(rec[1])}
		if t.EatenPct, err = strconv.ParseFloat(strings.TrimSpace(rec[2]), 64); err != nil || math.IsNaN(t.EatenPct) {
			return nil, fmt.Errorf("taps line %d: eaten_pct %q is not a number in [0, 100]", line, rec[2])
		}
		if len(rec) == 4 && strings.TrimSpace(rec[3]) != "" {
			if t.After, err = time.ParseDuration(strings.TrimSpace(rec[3])); err != nil {
				return nil, fmt.Errorf("taps line %d: after %q is not a duration such as 20s", line, rec[3])
			}
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("taps line %d: %w", line, err)
		}
		taps = append(taps, t)
	}
	return taps, nil
}

// ReadMealTapsFile reads a taps file with ReadMealTaps; errors name the file.
func ReadMealTapsFile(path string) ([]MealTap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("taps file: %w", err)
	}
	defer f.Close()
	taps, err := ReadMealTaps(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return taps, nil
}

// MealConfig configures a simulated smart-meal terminal.
type MealConfig struct {
	DeviceConfig
	// Taps are the card taps, in order.
	Taps []MealTap
}

// Validate reports every problem of c.
func (c MealConfig) Validate() error {
	errs := []error{c.DeviceConfig.Validate()}
	if len(c.Taps) == 0 {
		errs = append(errs, errors.New("meal: no tap (give a card or a taps file)"))
	}
	for i, t := range c.Taps {
		if err := t.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("meal tap %d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

// RunMeal runs a simulated smart-meal terminal (kind meal_terminal): it
// publishes one meal event per tap with attrs {"card", "meal",
// "eaten_pct" (%)}, stamped with the wall clock, waiting each tap's After
// first, then ends as cfg.OnEnd says. It returns nil when ctx is cancelled.
func RunMeal(ctx context.Context, cfg MealConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.DeviceConfig = cfg.DeviceConfig.withDefaults()
	return runDevice(ctx, cfg.DeviceConfig, device.MealTerminal, func(ctx context.Context, c *Conn) error {
		for i, t := range cfg.Taps {
			if err := sleep(ctx, t.After); err != nil {
				return err
			}
			if err := publishMeal(ctx, c, cfg.Now(), t); err != nil {
				return fmt.Errorf("meal tap %d: %w", i+1, err)
			}
		}
		return nil
	})
}

func publishMeal(ctx context.Context, pub eventPublisher, ts time.Time, t MealTap) error {
	return pub.PublishEvent(ctx, ts, device.EventMeal, map[string]any{"card": t.Card, "meal": t.Meal, "eaten_pct": t.EatenPct})
}
