import { describe, expect, it } from 'vitest';
import { TextOp, compose, cpLength, fromUtf16Changes, toUtf16Changes, transform, transformIndex, utf16ToCp, cpToUtf16 } from './ot';
import { OTClient } from './otclient';

const op = (...cs: (number | string)[]) => {
  const o = new TextOp();
  for (const c of cs) typeof c === 'string' ? o.insert(c) : c > 0 ? o.retain(c) : o.delete(-c);
  return o;
};

describe('code points', () => {
  it('counts an emoji as one', () => {
    expect(cpLength('a😀b')).toBe(3);
    expect('a😀b'.length).toBe(4);
    expect(cpToUtf16('a😀b', 2)).toBe(3);
    expect(utf16ToCp('a😀b', 3)).toBe(2);
  });

  it('converts UTF-16 editor changes to code points and back', () => {
    const doc = '😀x👍🏽y';
    // Replace "x" (UTF-16 2..3) by "é🎉", and insert "!" at the end.
    const changes = [{ from: 2, to: 3, insert: 'é🎉' }, { from: doc.length, to: doc.length, insert: '!' }];
    const o = fromUtf16Changes(doc, changes);
    expect(o.toInput()).toEqual([{ retain: 1 }, { insert: 'é🎉' }, { delete: 1 }, { retain: 3 }, { insert: '!' }]);
    expect(o.apply(doc)).toBe('😀é🎉👍🏽y!');
    expect(toUtf16Changes(doc, o)).toEqual([
      { from: 2, to: 2, insert: 'é🎉' }, { from: 2, to: 3, insert: '' }, { from: doc.length, to: doc.length, insert: '!' },
    ]);
  });

  it('applies and round-trips the GraphQL form', () => {
    const o = TextOp.fromInput([{ retain: 1 }, { delete: 1 }, { insert: 'Z' }, { retain: 1 }]);
    expect(o.toInput()).toEqual([{ retain: 1 }, { insert: 'Z' }, { delete: 1 }, { retain: 1 }]); // insert before delete
    expect(o.apply('😀😁😂')).toBe('😀Z😂');
  });
});

describe('transform', () => {
  it('puts the applied edit first at a tie (README: on "ab", X then Y at 1 give "aXYb")', () => {
    const x = op(1, 'X', 1), y = op(1, 'Y', 1);
    const [xp, yp] = transform(x, y);
    expect(yp.apply(x.apply('ab'))).toBe('aXYb');
    expect(xp.apply(y.apply('ab'))).toBe('aXYb');
  });

  it('converges on overlapping deletes and inserts with emoji', () => {
    const doc = 'h😀llo wörld';
    const a = op(1, -3, 'E', 7), b = op(2, -4, '🙂', 5);
    const [ap, bp] = transform(a, b);
    expect(bp.apply(a.apply(doc))).toBe(ap.apply(b.apply(doc)));
  });

  it('composes', () => {
    const a = op(2, '😀', 1), b = op(1, -2, 'x', 1);
    expect(compose(a, b).apply('abc')).toBe(b.apply(a.apply('abc')));
  });

  it('moves cursors', () => {
    expect(transformIndex(op(1, 'XY', 3), 2)).toBe(4);
    expect(transformIndex(op(1, -2, 1), 3)).toBe(1);
    expect(transformIndex(op(4, 'X'), 2)).toBe(2);
  });
});

// A server (applies in arrival order, transforming over what it applied
// since the base, the applied edit first) and two clients, driven step by step.
class FakeServer {
  doc: string;
  log: { op: TextOp; author: string }[] = [];
  constructor(doc: string) { this.doc = doc; }
  edit(base: number, o: TextOp, author: string): number {
    for (const applied of this.log.slice(base)) o = transform(applied.op, o)[1];
    this.doc = o.apply(this.doc);
    this.log.push({ op: o, author });
    return this.log.length;
  }
}

function tab(server: FakeServer, me: string) {
  const t = {
    doc: server.doc,
    sent: [] as { base: number; op: TextOp; seq: number }[],
    client: null as unknown as OTClient,
    type(o: TextOp) { t.doc = o.apply(t.doc); t.client.local(o); },
    /** The server takes our oldest submission; the answer comes back later. */
    deliver() { const s = t.sent.shift()!; return { seq: s.seq, revision: server.edit(s.base, s.op, me) }; },
    /** codeEdited events up to the server's head. */
    catchUp(from: number) {
      server.log.slice(from).forEach((e, i) => t.client.received({ revision: from + i + 1, op: e.op, authorId: e.author }));
    },
  };
  t.client = new OTClient(server.log.length, me, {
    send: (base, o, seq) => t.sent.push({ base, op: o, seq }),
    apply: (o) => { t.doc = o.apply(t.doc); },
  });
  return t;
}

describe('OTClient', () => {
  it('keeps one edit in flight and buffers the rest into one', () => {
    const s = new FakeServer('ab');
    const a = tab(s, 'ann');
    a.type(op(2, 'c'));
    a.type(op(3, 'd'));
    a.type(op(4, 'e'));
    expect(a.sent).toHaveLength(1);
    const ack = a.deliver();
    a.client.acked(ack.seq, ack.revision);
    expect(a.sent).toHaveLength(1); // the buffer goes out on the answer, as one edit
    expect(a.sent[0].base).toBe(1);
    expect(a.sent[0].op.toInput()).toEqual([{ retain: 3 }, { insert: 'de' }]);
    const ack2 = a.deliver();
    a.catchUp(0); // echoes of our own edits, before the answer: dropped once it comes
    a.client.acked(ack2.seq, ack2.revision);
    expect(a.client.synchronized).toBe(true);
    expect(a.client.revision).toBe(2);
    expect(a.doc).toBe(s.doc);
    expect(s.doc).toBe('abcde');
  });

  it('rebases pending edits over incoming ones and converges', () => {
    const s = new FakeServer('😀 hello');
    const a = tab(s, 'ann'), b = tab(s, 'bob');
    a.type(op(1, ' A', 6));       // in flight
    a.type(op(3, '😁', 6));       // buffered
    b.type(op(1, 'B', 6));        // same position as ann's first
    b.type(op(7, -1));            // delete the last "o"
    const bAck = b.deliver();     // bob's first lands first
    const aAck = a.deliver();     // ann's first is transformed over it
    a.catchUp(0);                 // ann sees bob's edit (and her own echo, held for the answer)
    a.client.acked(aAck.seq, aAck.revision);
    b.client.acked(bAck.seq, bAck.revision);
    b.catchUp(0);
    // Both buffers go out, then everyone catches up.
    while (a.sent.length || b.sent.length) {
      for (const t of [a, b]) {
        if (!t.sent.length) continue;
        const ack = t.deliver();
        t.client.acked(ack.seq, ack.revision);
      }
      a.catchUp(0);
      b.catchUp(0);
    }
    expect(a.client.synchronized && b.client.synchronized).toBe(true);
    expect(a.doc).toBe(s.doc);
    expect(b.doc).toBe(s.doc);
    expect(s.doc).toBe('😀B A😁 hell'); // bob's B landed first, so it goes first
  });

  it('holds an own-author edit until the answer says whether it is ours (another tab of the same user)', () => {
    const s = new FakeServer('x');
    const tab1 = tab(s, 'ann'), tab2 = tab(s, 'ann');
    tab1.type(op(1, '1'));
    tab2.type(op(1, '2'));
    const ack2 = tab2.deliver(); // the other tab's edit lands first: revision 1
    const ack1 = tab1.deliver(); // ours: revision 2
    tab1.catchUp(0);             // revision 1 is by "ann": held until we know
    expect(tab1.client.revision).toBe(0);
    tab1.client.acked(ack1.seq, ack1.revision);
    tab2.client.acked(ack2.seq, ack2.revision);
    tab2.catchUp(0);
    expect(tab1.client.revision).toBe(2);
    expect(tab1.doc).toBe(s.doc);
    expect(tab2.doc).toBe(s.doc);
    expect(s.doc).toBe('x21');
  });

  it('takes an emptied edit (no ops) as a revision with nothing to apply', () => {
    const applied: TextOp[] = [];
    const sent: number[] = [];
    const c = new OTClient(4, 'ann', { send: (base) => sent.push(base), apply: (o) => applied.push(o) });
    c.local(op(3, 'x'));  // in flight on "abc" at 4
    c.local(op(4, 'y'));  // buffered
    c.received({ revision: 5, op: TextOp.fromInput([]), authorId: 'bob' });
    expect(c.revision).toBe(5);
    expect(applied).toHaveLength(0);
    c.acked(1, 6);
    expect(c.revision).toBe(6);
    expect(sent).toEqual([4, 6]); // the buffer goes out on our answer's revision
  });

  it('ignores replays and duplicates after a reconnect (sinceRevision)', () => {
    const s = new FakeServer('');
    const a = tab(s, 'ann'), b = tab(s, 'bob');
    b.type(op('one'));
    const ack = b.deliver();
    b.client.acked(ack.seq, ack.revision);
    a.catchUp(0);
    a.catchUp(0); // resubscribed from an older revision: the same edits again
    expect(a.doc).toBe('one');
    expect(a.client.revision).toBe(1);
  });

  it.each([[['ann', 'bob', 'cy']], [['ann', 'ann', 'bob']]])('converges with three clients (%j) making random edits, answers and events in random order', (authors) => {
    let seed = 42;
    const rand = (n: number) => { // mulberry32: repeatable
      seed = (seed + 0x6d2b79f5) | 0;
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return (((x ^ (x >>> 14)) >>> 0) / 4294967296 * n) | 0;
    };
    const alphabet = ['a', 'b', '😀', '\n', 'é', '🏽'];
    const randomEdit = (doc: string) => {
      const len = cpLength(doc);
      const at = rand(len + 1), del = Math.min(rand(3), len - at);
      let ins = '';
      for (let k = rand(3); k > 0; k--) ins += alphabet[rand(alphabet.length)];
      return op(at, -del, ins, len - at - del);
    };
    for (let round = 0; round < 30; round++) {
      const s = new FakeServer('start 😀');
      const tabs = authors.map((a) => tab(s, a)); // two tabs of one user hold each other's edits until their answers
      const answers: { t: ReturnType<typeof tab>; seq: number; revision: number }[][] = [[], [], []];
      const seen = [0, 0, 0]; // codeEdited events delivered to each tab so far
      for (let step = 0; step < 200; step++) {
        const i = rand(3), t = tabs[i];
        switch (rand(4)) {
          case 0: t.type(randomEdit(t.doc)); break;
          case 1: if (t.sent.length) answers[i].push({ t, ...t.deliver() }); break;
          case 2: { const a = answers[i].shift(); if (a) t.client.acked(a.seq, a.revision); break; }
          case 3: { // some of the events, in order, from where this tab's subscription is
            const upTo = seen[i] + rand(s.log.length - seen[i] + 1);
            s.log.slice(seen[i], upTo).forEach((e, k) => t.client.received({ revision: seen[i] + k + 1, op: e.op, authorId: e.author }));
            seen[i] = upTo;
            break;
          }
        }
      }
      // Let everything settle.
      for (let k = 0; k < 50 && tabs.some((t, i) => t.sent.length || answers[i].length || !t.client.synchronized || t.client.revision < s.log.length); k++) {
        tabs.forEach((t, i) => {
          while (t.sent.length) answers[i].push({ t, ...t.deliver() });
          for (const a of answers[i].splice(0)) t.client.acked(a.seq, a.revision);
          t.catchUp(seen[i]);
          seen[i] = s.log.length;
        });
      }
      for (const t of tabs) {
        expect(t.client.synchronized).toBe(true);
        expect(t.client.revision).toBe(s.log.length);
        expect(t.doc).toBe(s.doc);
      }
    }
  });
});

