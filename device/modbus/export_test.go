package modbus

// shippedBytes exposes a shipped profile's YAML to the tests.
func ShippedBytes(name string) ([]byte, error) { return shipped.ReadFile("profiles/" + name + ".yaml") }
