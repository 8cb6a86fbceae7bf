package ferret

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Just enough of the MongoDB wire protocol for the embedded server's proxy:
// message framing, and OP_MSG sections.
// https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/

const (
	opMsg         = 2013
	headerLen     = 16
	maxMessageLen = 48 << 20 // the server's maxMessageSizeBytes

	flagChecksumPresent = 1 << 0
	flagMoreToCome      = 1 << 1
)

// message is one whole wire message, header included.
type message []byte

func (m message) requestID() int32  { return int32(binary.LittleEndian.Uint32(m[4:])) }
func (m message) responseTo() int32 { return int32(binary.LittleEndian.Uint32(m[8:])) }
func (m message) opCode() int32     { return int32(binary.LittleEndian.Uint32(m[12:])) }

func readMessage(r *bufio.Reader) (message, error) {
	hdr, err := r.Peek(4)
	if err != nil {
		return nil, err
	}
	n := int(int32(binary.LittleEndian.Uint32(hdr)))
	if n < headerLen || n > maxMessageLen {
		return nil, fmt.Errorf("wire message of %d bytes", n)
	}
	m := make(message, n)
	if _, err := io.ReadFull(r, m); err != nil {
		return nil, err
	}
	return m, nil
}

// opMessage is a parsed OP_MSG.
type opMessage struct {
	flags    uint32
	body     bson.Raw // the kind 0 section: the command
	sections [][]byte // every section as sent, kind byte included
	bodyAt   int      // index of the body in sections
}

func parseOpMsg(m message) (*opMessage, error) {
	if m.opCode() != opMsg || len(m) < headerLen+5 {
		return nil, errors.New("not an OP_MSG")
	}
	msg := &opMessage{flags: binary.LittleEndian.Uint32(m[headerLen:]), bodyAt: -1}
	rest := m[headerLen+4:]
	if msg.flags&flagChecksumPresent != 0 {
		if len(rest) < 4 {
			return nil, errors.New("short OP_MSG")
		}
		rest = rest[:len(rest)-4]
	}
	for len(rest) > 0 {
		if len(rest) < 5 {
			return nil, errors.New("short OP_MSG section")
		}
		// Both kinds start with an int32 length: of the document (kind 0)
		// or of the whole sequence (kind 1).
		n := int(int32(binary.LittleEndian.Uint32(rest[1:])))
		if n < 5 || n > len(rest)-1 {
			return nil, errors.New("bad OP_MSG section length")
		}
		switch rest[0] {
		case 0:
			if msg.bodyAt >= 0 {
				return nil, errors.New("two OP_MSG bodies")
			}
			msg.body = bson.Raw(rest[1 : 1+n])
			msg.bodyAt = len(msg.sections)
		case 1:
		default:
			return nil, fmt.Errorf("OP_MSG section kind %d", rest[0])
		}
		msg.sections = append(msg.sections, rest[:1+n])
		rest = rest[1+n:]
	}
	if msg.bodyAt < 0 {
		return nil, errors.New("OP_MSG without a body")
	}
	return msg, nil
}

// command returns the command's name, in lower case.
func (msg *opMessage) command() string {
	e, err := msg.body.IndexErr(0)
	if err != nil {
		return ""
	}
	return strings.ToLower(e.Key())
}

// encode returns the message with body replaced, as request id.
func (msg *opMessage) encode(requestID int32, body bson.Raw) message {
	n := headerLen + 4
	for i, s := range msg.sections {
		if i == msg.bodyAt {
			n += 1 + len(body)
		} else {
			n += len(s)
		}
	}
	m := make(message, headerLen+4, n)
	binary.LittleEndian.PutUint32(m[0:], uint32(n))
	binary.LittleEndian.PutUint32(m[4:], uint32(requestID))
	binary.LittleEndian.PutUint32(m[12:], opMsg)
	binary.LittleEndian.PutUint32(m[headerLen:], msg.flags&^flagChecksumPresent)
	for i, s := range msg.sections {
		if i == msg.bodyAt {
			m = append(m, 0)
			m = append(m, body...)
		} else {
			m = append(m, s...)
		}
	}
	return m
}

// newCommand returns an OP_MSG carrying cmd.
func newCommand(requestID int32, cmd bson.D) (message, error) {
	body, err := bson.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	msg := &opMessage{sections: [][]byte{nil}, bodyAt: 0}
	return msg.encode(requestID, body), nil
}
