package main

// ACLs: which nodes hacron gives which ACL, whether an existing cluster node
// is this cluster's, and how ACLs are shown to a person.
//
// Several clusters, with different credentials or none, share one ensemble.
// The nodes above a cluster's own node (/hacron and the chroot's components)
// are shared ground: anyone may read them and create children, nothing more.
// ZooKeeper checks a create against the parent's c and a delete against the
// parent's d, so on shared ground anyone can add a cluster node but nobody
// can remove one, nor change the shared nodes or their ACLs. The cluster's
// node and everything below it carry the cluster's ACL.

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/go-zookeeper/zk"
)

// sharedACL is the ACL of the nodes hacron creates above a cluster's node.
var sharedACL = zk.WorldACL(zk.PermRead | zk.PermCreate)

// clusterNeeds is what a cluster's credentials must hold on the cluster's
// node: everything hacron gives itself there except changing the ACL.
const clusterNeeds = zk.PermRead | zk.PermWrite | zk.PermCreate | zk.PermDelete

// isAbove says whether node is a strict ancestor of p.
func isAbove(node, p string) bool {
	return node == "/" && p != "/" || strings.HasPrefix(p, node+"/")
}

// mine says whether an ACL entry applies to this client: world:anyone
// applies to everyone, a digest entry to its own credentials (see ours).
// Other schemes (ip, x509, sasl) never count: hacron cannot tell whether
// they admit it.
func (c *zkClient) mine(e zk.ACL) bool {
	return e.Scheme == "world" && e.ID == "anyone" || c.ours(e)
}

// ours says whether an ACL entry is the digest of this client's
// credentials. A client without a on a node sees digest entries with the
// hash hidden ("user:x"): such an entry with this client's user counts
// unless it grants a, for a client it applied to would have had a and seen
// the hash.
func (c *zkClient) ours(e zk.ACL) bool {
	if e.Scheme != "digest" || c.auth == nil {
		return false
	}
	own := c.acl[0].ID // the cluster's digest entry comes first
	user, _, _ := strings.Cut(own, ":")
	return e.ID == own || e.ID == user+":x" && e.Perms&zk.PermAdmin == 0
}

// granted is what an ACL lets this client do.
func (c *zkClient) granted(acl []zk.ACL) (perms int32) {
	for _, e := range acl {
		if c.mine(e) {
			perms |= e.Perms
		}
	}
	return perms
}

// foreign lists the entries of an ACL that grant some of want to someone
// besides this client's credentials.
func (c *zkClient) foreign(acl []zk.ACL, want int32) []zk.ACL {
	var out []zk.ACL
	for _, e := range acl {
		if !c.ours(e) && e.Perms&want != 0 {
			out = append(out, e)
		}
	}
	return out
}

// who names this client's identity as ACLs name it.
func (c *zkClient) who() string {
	if c.auth == nil {
		return "world:anyone (no --zk-auth-file)"
	}
	user, _, _ := strings.Cut(string(c.auth), ":")
	return "digest:" + user
}

// permString writes permissions as zkCli.sh does: c d r w a.
func permString(p int32) string {
	var b strings.Builder
	for _, x := range []struct {
		bit  int32
		name byte
	}{{zk.PermCreate, 'c'}, {zk.PermDelete, 'd'}, {zk.PermRead, 'r'}, {zk.PermWrite, 'w'}, {zk.PermAdmin, 'a'}} {
		if p&x.bit != 0 {
			b.WriteByte(x.name)
		}
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return b.String()
}

// aclString shows an ACL as "scheme:id perms, ...". A digest id shows its
// user only: the rest is a password hash (or hidden by the server).
func aclString(acl []zk.ACL) string {
	if len(acl) == 0 {
		return "empty"
	}
	parts := make([]string, len(acl))
	for i, e := range acl {
		id := e.ID
		if e.Scheme == "digest" {
			id, _, _ = strings.Cut(id, ":")
		}
		parts[i] = e.Scheme + ":" + id + " " + permString(e.Perms)
	}
	return strings.Join(parts, ", ")
}

// ensureCluster makes the cluster's node (the shared ground above it
// included) and refuses to go on when that node is not this cluster's.
func (c *zkClient) ensureCluster(conn *zk.Conn) error {
	if err := c.ensurePath(conn, c.cfg.ClusterRoot); err != nil {
		return err
	}
	return c.clusterNodeProblem(conn)
}

// clusterNodeProblem reads the ACL of the cluster's node and says, in one
// line and a hint, why it is not this cluster's; nil when it is.
func (c *zkClient) clusterNodeProblem(conn *zk.Conn) error {
	node := c.abs(c.cfg.ClusterRoot)
	acl, _, err := conn.GetACL(node)
	if errors.Is(err, zk.ErrNoAuth) {
		// ZooKeeper shows an ACL only to a client with r or a on the node.
		return withHint(fmt.Errorf("cluster node %s is not this cluster's: its ACL gives %s nothing, not even reading the ACL", node, c.who()),
			c.notOursHint(nil))
	}
	if err != nil {
		return fmt.Errorf("read the ACL of %s: %w", node, err)
	}
	if got := c.granted(acl); got&clusterNeeds != clusterNeeds {
		return withHint(fmt.Errorf("cluster node %s is not this cluster's: its ACL is %s; %s gets %s, hacron needs %s",
			node, aclString(acl), c.who(), permString(got), permString(clusterNeeds)),
			c.notOursHint(acl))
	}
	return nil
}

// notOursHint says what to do about a cluster node that is not this
// cluster's.
func (c *zkClient) notOursHint(acl []zk.ACL) string {
	if c.auth == nil {
		return "another cluster, with credentials, uses this name: give this cluster its --zk-auth-file, or choose another --cluster"
	}
	user, _, _ := strings.Cut(string(c.auth), ":")
	for _, e := range acl {
		if e.Scheme == "digest" && strings.HasPrefix(e.ID, user+":") && !c.ours(e) {
			return fmt.Sprintf("the ACL names user %s with another password: check the password in %s", user, c.cfg.AuthFile)
		}
	}
	return fmt.Sprintf("another cluster uses this name, the node was made by hand, or %s holds a wrong password: choose another --cluster, use the credentials the node's ACL names, or have its owner grant %s %s (zkCli.sh setAcl)",
		c.cfg.AuthFile, c.who(), permString(clusterNeeds))
}

// createDenied explains a create that ZooKeeper refused: the parent's ACL
// decides, so it is read and named.
func (c *zkClient) createDenied(conn *zk.Conn, node string, err error) error {
	parent := path.Dir(node)
	shown := parent
	if acl, _, aerr := conn.GetACL(parent); aerr == nil {
		shown = fmt.Sprintf("%s (%s)", parent, aclString(acl))
	}
	err = noAuth(err, "create "+node, shown)
	if c.cfg.ClusterRoot != "" && isAbove(parent, c.abs(c.cfg.ClusterRoot)) {
		err = withHint(err, fmt.Sprintf("the nodes above a cluster's own are shared by all clusters and should carry world:anyone:cr: whoever holds a on %s can set that (zkCli.sh setAcl %s world:anyone:cr), or give this cluster a chroot of its own (--zk host:port/chroot)", parent, parent))
	}
	return err
}

// aclReport is what hacron check says about ACLs.
type aclReport struct {
	ok, warn func(format string, args ...any)
	bad      func(err error)
}

// checkACLs shows the ACL of every node above the cluster's and of the
// cluster's node, says whether this cluster could create what is missing,
// and warns when anyone but the cluster can change or delete the cluster's
// nodes. It returns false when the cluster's node is not this cluster's.
func (c *zkClient) checkACLs(conn *zk.Conn, r aclReport) bool {
	root := c.abs(c.cfg.ClusterRoot)
	var chain []string
	for i := 1; i < len(root); i++ {
		if root[i] == '/' {
			chain = append(chain, root[:i])
		}
	}
	chain = append(chain, root)
	var above []zk.ACL // of the node above this one; nil when hidden
	for i, node := range chain {
		exists, _, err := conn.Exists(node)
		if err != nil {
			r.bad(fmt.Errorf("%s: %w", node, err))
			return false
		}
		if !exists {
			// Nothing below exists either: the node above decides.
			switch {
			case i > 0 && above == nil:
				r.warn("cannot tell whether %s may create %s: the ACL of %s is hidden from it", c.who(), node, chain[i-1])
			case i > 0 && c.granted(above)&zk.PermCreate == 0:
				r.bad(withHint(fmt.Errorf("%s cannot be created: the ACL of %s (%s) does not let %s create children", node, chain[i-1], aclString(above), c.who()),
					fmt.Sprintf("the nodes above a cluster's own should carry world:anyone:cr: whoever holds a on %s can set that (zkCli.sh setAcl %s world:anyone:cr), or give this cluster a chroot of its own", chain[i-1], chain[i-1])))
			case node == root:
				r.ok("%s absent: the first agent or direct run makes it (%s)", node, aclString(c.acl))
			default:
				r.ok("%s absent: the first agent or direct run makes it (%s) and the cluster's node below (%s)", node, aclString(sharedACL), aclString(c.acl))
			}
			return true
		}
		if node == root {
			if err := c.clusterNodeProblem(conn); err != nil {
				r.bad(err)
				return false
			}
			acl, _, _ := conn.GetACL(node)
			r.ok("ACL %s: %s (the cluster's node)", node, aclString(acl))
			break
		}
		acl, _, err := conn.GetACL(node)
		switch {
		case errors.Is(err, zk.ErrNoAuth):
			r.ok("ACL %s: hidden from %s", node, c.who())
			above = nil
			continue
		case err != nil:
			r.bad(fmt.Errorf("read the ACL of %s: %w", node, err))
			return false
		}
		r.ok("ACL %s: %s", node, aclString(acl))
		above = acl
		if chain[i+1] == root && c.auth != nil {
			if f := c.foreign(acl, zk.PermDelete); len(f) > 0 {
				r.warn("%s lets %s delete its children: the cluster's node could be removed while empty and made again by someone else (hacron makes %s)", node, aclString(f), aclString(sharedACL))
			}
		}
	}
	if c.auth == nil {
		return true // every node is open to all, as warned above
	}
	for _, node := range clusterNodes(conn, root) {
		acl, _, err := conn.GetACL(node)
		if err != nil {
			continue // absent, or hidden from this client: then not of hacron's making
		}
		if f := c.foreign(acl, zk.PermWrite|zk.PermCreate|zk.PermDelete|zk.PermAdmin); len(f) > 0 {
			r.warn("%s can be changed by %s as well as by this cluster", node, aclString(f))
		}
	}
	return true
}

// clusterNodes lists the cluster's node and the persistent nodes below it
// that hold everything else: mode, election, jobs and each job's runs and
// lock. Some may not exist.
func clusterNodes(conn *zk.Conn, root string) []string {
	nodes := []string{root, root + "/mode", root + "/election", root + "/jobs"}
	jobs, _, _ := conn.Children(root + "/jobs")
	for _, j := range jobs {
		p := root + "/jobs/" + j
		nodes = append(nodes, p, p+"/runs", p+"/lock")
	}
	return nodes
}
