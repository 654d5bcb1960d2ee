package selinux

import "strings"

// prefixIndex maps literal prefixes to the specifications that start with
// them, as a radix tree: a lookup walks the path once and gathers every
// specification whose prefix the path starts with; no other one can match.
type prefixIndex struct {
	root prefixNode
}

type prefixNode struct {
	label    string        // the edge from the parent
	children []*prefixNode // first bytes of labels differ
	specs    []int32       // specifications whose prefix ends here, ascending
}

// add records spec id under prefix. Calls come in ascending id order.
func (x *prefixIndex) add(prefix string, id int32) {
	n := &x.root
	for prefix != "" {
		i := n.childIndex(prefix[0])
		if i < 0 {
			n.children = append(n.children, &prefixNode{label: prefix, specs: []int32{id}})
			return
		}
		child := n.children[i]
		common := 0
		for common < len(child.label) && common < len(prefix) && child.label[common] == prefix[common] {
			common++
		}
		if common < len(child.label) { // split the edge
			split := &prefixNode{label: child.label[:common], children: []*prefixNode{child}}
			child.label = child.label[common:]
			n.children[i] = split
			child = split
		}
		n, prefix = child, prefix[common:]
	}
	n.specs = append(n.specs, id)
}

func (n *prefixNode) childIndex(b byte) int {
	for i, c := range n.children {
		if c.label[0] == b {
			return i
		}
	}
	return -1
}

// collect appends to lists the spec lists of every prefix of key.
func (x *prefixIndex) collect(key string, lists [][]int32) [][]int32 {
	n := &x.root
	for {
		if len(n.specs) > 0 {
			lists = append(lists, n.specs)
		}
		if key == "" {
			return lists
		}
		i := n.childIndex(key[0])
		if i < 0 || !strings.HasPrefix(key, n.children[i].label) {
			return lists
		}
		n = n.children[i]
		key = key[len(n.label):]
	}
}
