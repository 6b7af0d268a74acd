// Recordings through the official openvidu-node-client, against the Chorus master at
// OPENVIDU_URL whose media node's agent runs a recording hook. Driven by
// tests/recordings.rs: it asks the test (a line on stdout, answered on stdin) to act as
// the media node's signalling (`join TOKEN`). Any failed check exits non-zero.
'use strict';

const assert = require('node:assert/strict');
const readline = require('node:readline');
const { OpenVidu, OpenViduRole } = require('openvidu-node-client');

const ov = new OpenVidu(process.env.OPENVIDU_URL, process.env.OPENVIDU_SECRET);
ov.enableProdMode();
const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function ask(request) {
    process.stdout.write(request + '\n');
    const { value, done } = await answers.next();
    assert(!done, `the test went away before answering "${request}"`);
    return value;
}

async function rejectsWith(promise, status) {
    await assert.rejects(promise, (e) => e.message === String(status), `expected HTTP ${status}`);
}

// Polls the recording until `done(recording)`, for at most 20 s: its node's agent
// reports the hook's outcome with its next heartbeat.
async function until(id, done) {
    const deadline = Date.now() + 20000;
    for (;;) {
        const recording = await ov.getRecording(id);
        if (done(recording)) return recording;
        assert(Date.now() < deadline, `recording ${id} is still ${recording.status}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
}

async function main() {
    const session = await ov.createSession({ customSessionId: 'rec-room' });
    // Nobody publishes yet: OpenVidu's 406.
    await rejectsWith(ov.startRecording('rec-room'), 406);
    await rejectsWith(ov.startRecording('no-such-room'), 404);
    const alice = await session.createConnection({ role: OpenViduRole.PUBLISHER, data: 'alice' });
    const token = new URL(alice.token).searchParams.get('token');
    assert.equal(await ask(`join ${token}`), 'joined');

    await rejectsWith(ov.startRecording('rec-room', { resolution: '5000x5000' }), 422);
    const started = Date.now();
    let recording = await ov.startRecording('rec-room', {
        name: 'talk',
        outputMode: 'COMPOSED',
        resolution: '640x480',
        frameRate: 30,
    });
    assert.equal(recording.id, 'rec-room');
    assert.equal(recording.sessionId, 'rec-room');
    assert.equal(recording.status, 'starting');
    assert.equal(recording.properties.name, 'talk');
    assert.equal(recording.properties.resolution, '640x480');
    assert.equal(recording.properties.frameRate, 30);
    assert.equal(recording.properties.recordingLayout, 'BEST_FIT');
    // One at a time; not stoppable while starting.
    await rejectsWith(ov.startRecording('rec-room'), 409);
    await rejectsWith(ov.stopRecording('rec-room'), 406);

    recording = await until('rec-room', (r) => r.status === 'started');
    const startedMs = Date.now() - started;
    await session.fetch();
    assert.equal(session.recording, true);
    await rejectsWith(ov.deleteRecording('rec-room'), 409);

    recording = await ov.stopRecording('rec-room');
    assert.equal(recording.status, 'stopped');
    recording = await until('rec-room', (r) => r.status === 'ready');
    assert(recording.size > 0, `size ${recording.size}`);
    assert.equal(recording.duration, 1.5);
    assert.match(recording.url, /^file:\/\/.*rec-room\.mp4$/);
    await session.fetch();
    assert.equal(session.recording, false);

    // The next one is `rec-room~1`, as OpenVidu names them.
    const second = await ov.startRecording('rec-room');
    assert.equal(second.id, 'rec-room~1');
    await until('rec-room~1', (r) => r.status === 'started');
    await ov.stopRecording('rec-room~1');
    await until('rec-room~1', (r) => r.status === 'ready');

    const listed = (await ov.listRecordings()).map((r) => r.id).sort();
    assert.deepEqual(listed, ['rec-room', 'rec-room~1']);
    await ov.deleteRecording('rec-room');
    await rejectsWith(ov.getRecording('rec-room'), 404);
    await rejectsWith(ov.stopRecording('rec-room'), 404);
    await rejectsWith(ov.deleteRecording('rec-room'), 404);
    process.stdout.write(`done started-ms=${startedMs}\n`);
    process.exit(0);
}

main().catch((e) => {
    process.stderr.write(`recording flow failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
});
