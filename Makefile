# The two set-up commands of README.md are `make demo` and `make test`.
GO      ?= go
GOBIN   ?= $(shell $(GO) env GOPATH)/bin
INFLUXD := $(GOBIN)/influxd
# The demo's embedded broker: 1884, so it never clashes with a Mosquitto on 1883.
MQTT_LISTEN ?= 127.0.0.1:1884
HTTP        ?= 127.0.0.1:8080

.PHONY: demo test build influxd services

## demo: build InfluxDB 1.8.10 (once) and the platform, then run everything with the demo facility
demo: influxd build
	./bin/eldercare up --demo --mqtt-listen $(MQTT_LISTEN) --http $(HTTP)

## build: the single binary, into ./bin/eldercare
build:
	$(GO) build -o bin/eldercare ./cmd/eldercare

## influxd: InfluxDB 1.8.10 from source into $(GOBIN) (about a minute, once)
influxd: $(INFLUXD)
$(INFLUXD):
	$(GO) install github.com/influxdata/influxdb/cmd/influxd@v1.8.10

## services: make sure the broker and database the tests use are running
services:
	./scripts/services.sh

## test: everything the tests need, then the whole suite with the race detector
test: influxd services
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 45m ./...
