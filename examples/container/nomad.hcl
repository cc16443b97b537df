# The example image (Dockerfile) as a Nomad job with the docker driver.
# Script checks run in the container (as `docker exec` does) and need the
# Consul service provider. A script check's exit 1 means "warning", which
# Consul still routes traffic to: `|| exit 2` makes every failure critical.
job "app" {
  type = "service"

  group "app" {
    count = 1

    task "app" {
      driver = "docker"

      config {
        image           = "supervisor-example:latest"
        readonly_rootfs = true
        # The supervisor is the init: leave the driver's `init` off.

        mount {
          type     = "tmpfs"
          target   = "/run"
          readonly = false
          tmpfs_options {
            size = 67108864
          }
        }
      }

      # A graceful stop, in reverse dependency order. Nomad's default
      # kill_timeout (5 s) is too short: the longest chain of stop_timeouts
      # (web or compact 5 s, then db 10 s) plus 5 s for processes no
      # service owns.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      service {
        name     = "app"
        provider = "consul"

        # Readiness: passing once every service that should run is ready.
        check {
          name     = "ready"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "supervisor wait --ready --timeout 1s || exit 2"]
          interval = "5s"
          timeout  = "3s"
        }

        # Liveness: three failures in a row restart the task; the grace
        # covers the start, while web waits for db.
        check {
          name     = "alive"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "supervisor status db web || exit 2"]
          interval = "10s"
          timeout  = "3s"

          check_restart {
            limit           = 3
            grace           = "60s"
            ignore_warnings = false
          }
        }
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
