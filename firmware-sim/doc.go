// Package firmwaresim simulates the platform's devices: each simulated
// device is its own MQTT client speaking protocol v1 (package device) at
// QoS 1, with a retained online status on connect and a retained offline
// last will.
//
// The simulators replay real recordings where they exist:
//
//   - a vitals monitor replays a BIDMC numerics file (HR, PULSE, RESP,
//     SpO2 at 1 Hz; PhysioNet BIDMC PPG and Respiration Dataset) as
//     hr_bpm, pulse_bpm, resp_per_min and spo2_pct readings (RunVitals);
//   - a wrist fall detector replays a WEDA-FALL accelerometer recording
//     through the product's detector (package device/fall) and publishes a
//     fall event per detection (RunFall);
//   - a bed sensor, an SOS button and a smart-meal terminal generate their
//     events (RunBed, RunSOS, RunMeal);
//   - RunDemo runs a whole care station of such devices.
//
// Replays are anchored (see Anchor): the last sample is stamped at the
// moment the replay ends, device-time spacing stays real at any speed, and
// no timestamp is ever in the future.
//
// By design this package imports only the protocol (device, including
// device/fall), the standard library and paho, so a simulator never shares a
// bug with the platform it exercises. device/fall is the exception that
// issue 12 asks for: the fall detector is what a wristband's firmware runs,
// so the simulated wristband runs the product's detector, the same one the
// gateway's accel source runs for bands that stream raw acceleration.
package firmwaresim
