# hacron's build. `make test` is what CI runs (.ci/run).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
ZK_JAR  := /usr/share/java/zookeeper.jar

.PHONY: build test vet zookeeper demo install chaos bench fuzz clean

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

FUZZTARGETS := FuzzConfigParse FuzzSocketDecode FuzzRunRecord

test: zookeeper vet
	$(GO) test -race -count=1 -timeout 14m ./...
	$(MAKE) fuzz FUZZTIME=20000x
	$(MAKE) demo

# Each fuzz target with its corpus (testdata/fuzz/); longer: FUZZTIME=10m.
# make test counts executions rather than time: a deadline that falls on a
# busy worker fails a time-bounded run with "context deadline exceeded".
FUZZTIME ?= 2m
fuzz:
	for t in $(FUZZTARGETS); do $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) . || exit 1; done

# The fault-injection suite: CHAOS=10m by default, SEED=n replays a run.
CHAOS ?= 10m
SEED  ?= 0
chaos: zookeeper
	$(GO) test -count=1 -run 'TestIntegration_Chaos$$' -v -timeout 0 . -args -hacron.chaos=$(CHAOS) -hacron.seed=$(SEED)

# The figures users compare with: a markdown table and the machine.
# BENCHREF=path/to/an/older/hacron measures it beside this build.
bench: zookeeper
	$(GO) test -count=1 -run 'TestBenchReport$$' -v -timeout 0 . -args -hacron.bench $(if $(BENCHREF),-hacron.benchref=$(BENCHREF))

# The README's first command: two agents on a local ZooKeeper, a failover.
demo: zookeeper build
	./dist/demo.sh

# make install [DESTDIR=...] [PREFIX=/usr/local] [RCRON=1]: the binary, the
# systemd unit, the example config (kept if one exists), and with RCRON=1
# an rcron symlink for existing crontabs.
PREFIX ?= /usr/local
install: build
	install -D -m 0755 hacron $(DESTDIR)$(PREFIX)/bin/hacron
	install -D -m 0644 dist/hacron-agent.service $(DESTDIR)/etc/systemd/system/hacron-agent.service
	sed -i 's|/usr/local/bin/hacron|$(PREFIX)/bin/hacron|' $(DESTDIR)/etc/systemd/system/hacron-agent.service
	test -e $(DESTDIR)/etc/hacron/hacron.conf || install -D -m 0644 dist/hacron.conf $(DESTDIR)/etc/hacron/hacron.conf
	if [ -n "$(RCRON)" ]; then ln -sf hacron $(DESTDIR)$(PREFIX)/bin/rcron; fi

clean:
	rm -f hacron
