package gvariant

import "encoding/binary"

// Framing: containers of variable-size children record where children end
// in a table of little-endian offsets at the container's end, all of one
// width chosen from the container's total size.

// offsetWidth is the width a reader derives from a container's total size.
func offsetWidth(size int) int {
	switch {
	case size == 0:
		return 0
	case size <= 0xff:
		return 1
	case size <= 0xffff:
		return 2
	case uint64(size) <= 0xffffffff:
		return 4
	default:
		return 8
	}
}

// writerOffsetWidth is the smallest width w that lets a body of the given
// size and n offsets of width w fit in what w can address.
func writerOffsetWidth(body, n int) int {
	switch {
	case body+n <= 0xff:
		return 1
	case body+2*n <= 0xffff:
		return 2
	case uint64(body+4*n) <= 0xffffffff:
		return 4
	default:
		return 8
	}
}

// readOffset reads one offset of width len(b) (1, 2, 4 or 8).
func readOffset(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	default:
		return binary.LittleEndian.Uint64(b)
	}
}

func appendOffset(buf []byte, v, width int) []byte {
	switch width {
	case 1:
		return append(buf, byte(v))
	case 2:
		return binary.LittleEndian.AppendUint16(buf, uint16(v))
	case 4:
		return binary.LittleEndian.AppendUint32(buf, uint32(v))
	default:
		return binary.LittleEndian.AppendUint64(buf, uint64(v))
	}
}
