// Package deps pins module requirements until real imports exist; removed at integration.
package deps
import (
 _ "github.com/eclipse/paho.mqtt.golang"
 _ "github.com/influxdata/influxdb-client-go/v2"
 _ "github.com/gofiber/fiber/v2"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/spf13/cobra"
 _ "github.com/spf13/viper"
 _ "github.com/mochi-mqtt/server/v2"
 _ "modernc.org/sqlite"
 _ "github.com/jackc/pgx/v5/stdlib"
 _ "github.com/pressly/goose/v3"
 _ "gopkg.in/yaml.v3"
 _ "golang.org/x/sync/errgroup"
)
