# hacron's build. `make test` is what CI runs (.ci/run).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
ZK_JAR  := /usr/share/java/zookeeper.jar

.PHONY: build test vet zookeeper demo clean

build: hacron

hacron: $(wildcard *.go) go.mod go.sum
	$(GO) build -ldflags '$(LDFLAGS)' -o hacron .

# The tests start their own ZooKeeper servers from Debian's package.
zookeeper:
	@if [ ! -f $(ZK_JAR) ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's zookeeper package"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y zookeeper || \
			{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y zookeeper; }; \
		else \
			echo "Debian's zookeeper package is missing; run: sudo apt-get install -y zookeeper" >&2; \
			exit 1; \
		fi; \
	fi

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

test: zookeeper vet
	$(GO) test -race -count=1 -timeout 14m ./...

# The README's first command: two agents on a local ZooKeeper, a failover.
demo: zookeeper build
	./dist/demo.sh

clean:
	rm -f hacron
