// An OpenVidu application server's flow, through the official openvidu-node-client,
// against the Chorus master at OPENVIDU_URL. Driven by tests/openvidu.rs: it runs the
// flow, asks the test (a line on stdout, answered on stdin) to act as the media node
// (`join TOKEN`) and to kill the leader (`kill-leader`), then runs the flow again.
// Any failed check or rejected call exits non-zero with the reason.
'use strict';

const assert = require('node:assert/strict');
const readline = require('node:readline');
const { OpenVidu, OpenViduRole } = require('openvidu-node-client');

const url = process.env.OPENVIDU_URL;
const secret = process.env.OPENVIDU_SECRET;
const ov = new OpenVidu(url, secret);
ov.enableProdMode();

const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// Asks the test to do something; resolves with its one-line answer.
async function ask(request) {
    process.stdout.write(request + '\n');
    const { value, done } = await answers.next();
    assert(!done, `the test went away before answering "${request}"`);
    return value;
}

// The `token` query parameter of a connection's token URL.
function tokenOf(connection) {
    const token = new URL(connection.token).searchParams.get('token');
    assert.match(token, /^tok_/, `no token in ${connection.token}`);
    return token;
}

async function rejectsWith(promise, status) {
    await assert.rejects(promise, (e) => e.message === String(status), `expected HTTP ${status}`);
}

async function flow(round) {
    const custom = `room-${round}`;
    const started = Date.now();
    const session = await ov.createSession({ customSessionId: custom, recordingMode: 'MANUAL' });
    const firstCallMs = Date.now() - started;
    assert.equal(session.sessionId, custom);
    // The same custom id again: the server answers 409 and the client fetches it.
    const again = await ov.createSession({ customSessionId: custom });
    assert.equal(again.sessionId, custom);
    const generated = await ov.createSession();
    assert.match(generated.sessionId, /^ses_/);

    const alice = await session.createConnection({ role: OpenViduRole.PUBLISHER, data: 'alice' });
    const bob = await session.createConnection({ role: OpenViduRole.SUBSCRIBER, data: 'bob', record: false });
    assert.equal(alice.status, 'pending');
    assert.equal(alice.connectionProperties.data, 'alice');
    assert.equal(bob.connectionProperties.role, 'SUBSCRIBER');
    assert.equal(bob.connectionProperties.record, false);
    assert.notEqual(tokenOf(alice), tokenOf(bob));
    // The deprecated token call older applications still make.
    const legacy = await session.generateToken({ role: OpenViduRole.MODERATOR, data: 'carol' });
    assert.match(legacy, /token=tok_/);

    await ov.fetch();
    const listed = ov.activeSessions.map((s) => s.sessionId);
    assert(listed.includes(custom) && listed.includes(generated.sessionId), `listed: ${listed}`);

    // The media node's signalling redeems alice's token: she shows active.
    assert.equal(await ask(`join ${tokenOf(alice)}`), 'joined');
    await session.fetch();
    const fetched = session.connections.find((c) => c.connectionId === alice.connectionId);
    assert.equal(fetched.status, 'active');
    assert.deepEqual(session.activeConnections.map((c) => c.connectionId), [alice.connectionId]);
    assert.equal(session.connections.length, 3);

    // The client's answer is its own copy with the change applied; the server's view
    // is what the fetch shows.
    await session.updateConnection(bob.connectionId, { role: OpenViduRole.PUBLISHER, record: true });
    await session.fetch();
    const bobNow = session.connections.find((c) => c.connectionId === bob.connectionId);
    assert.equal(bobNow.connectionProperties.role, 'PUBLISHER');
    assert.equal(bobNow.connectionProperties.record, true);

    await session.forceDisconnect(bob.connectionId);
    await session.fetch();
    assert(!session.connections.some((c) => c.connectionId === bob.connectionId));
    await rejectsWith(session.forceDisconnect(bob.connectionId), 404);

    await session.close();
    await generated.close();
    await rejectsWith(session.fetch(), 404);
    await ov.fetch();
    assert(!ov.activeSessions.some((s) => s.sessionId === custom));

    const intruder = new OpenVidu(url, 'not-the-secret');
    await rejectsWith(intruder.fetch(), 401);
    await rejectsWith(intruder.createSession(), 401);
    return firstCallMs;
}

async function main() {
    await flow(1);
    assert.equal(await ask('kill-leader'), 'killed');
    // Straight on, through the same URL, while the others elect a new leader.
    const firstCallMs = await flow(2);
    process.stdout.write(`done first-call-after-kill-ms=${firstCallMs}\n`);
    process.exit(0);
}

main().catch((e) => {
    process.stderr.write(`flow failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
});
