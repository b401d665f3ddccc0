module hacron

go 1.26.8

require (
	github.com/alecthomas/kong v1.17.0
	github.com/go-zookeeper/zk v1.0.4
)
