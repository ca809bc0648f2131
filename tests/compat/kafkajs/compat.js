#!/usr/bin/env node
// Spate's Kafka-API compatibility program for kafkajs 2.2 (pure JavaScript; it speaks only the
// non-flexible protocol versions: ApiVersions <= 2, Produce <= 7, Fetch <= 11, Metadata <= 6).
//
// Runs the plan every client folder under tests/compat/ runs against $KAFKA_BOOTSTRAP: create a
// topic with the admin API, produce keyed records with the client's defaults (acks=all, not
// idempotent), then idempotently, then once per compression codec kafkajs has here (gzip built
// in, snappy through kafkajs-snappy; its lz4 and zstd codecs are native add-ons that download
// prebuilt binaries, which this machine cannot), consume them with a group of two members and
// check every record exactly, commit, restart a consumer and check it resumes at the committed
// offset, list offsets and describe configs, delete the topic. Exits 0 only if every check passed.
'use strict'

const crypto = require('crypto')
const {
  Kafka,
  CompressionTypes,
  CompressionCodecs,
  ConfigResourceTypes,
  Partitioners,
  logLevel,
} = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec

const CLIENT = 'kafkajs'
const PARTITIONS = 3
const RETENTION_MS = '86400000' // a topic-level override describe must report as such
const DEFAULT_RECORDS = 30
const PHASE_RECORDS = 10
const AFTER_RECORDS = 12
const DEADLINE_MS = 60000
const TOPIC_CONFIG_SOURCE = 1 // DescribeConfigs' DYNAMIC_TOPIC_CONFIG

const BOOTSTRAP = process.env.KAFKA_BOOTSTRAP || ''
const RUN_ID = crypto.randomBytes(4).toString('hex')
const TOPIC = `compat-${CLIENT}-${RUN_ID}`
const GROUP = `compat-${CLIENT}-group-${RUN_ID}`
const STARTED = Date.now()

const checks = { passed: 0, failed: [] }

function check(name, ok, detail = '') {
  if (ok) {
    checks.passed += 1
    console.log(`  ok   ${name}`)
  } else {
    checks.failed.push(name)
    console.log(`  FAIL ${name}: ${detail}`)
  }
  return ok
}

function step(name) {
  console.log(`== [${((Date.now() - STARTED) / 1000).toFixed(1).padStart(5)} s] ${name}`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitUntil(what, predicate, timeoutMs = DEADLINE_MS) {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await predicate()) return true
    await sleep(100)
  }
  console.log(`  (timed out after ${timeoutMs / 1000} s waiting for ${what})`)
  return false
}

function errorText(error) {
  return `${error.name}: ${error.message}${error.type ? ` (${error.type})` : ''}`
}

const kafka = new Kafka({
  clientId: CLIENT,
  brokers: [BOOTSTRAP],
  logLevel: logLevel.WARN,
})

// The model of what was acknowledged: "partition/offset" -> { key, value, headers }.
const produced = { records: new Map(), partitionOfKey: new Map() }

function byPartition() {
  const out = new Map()
  for (let p = 0; p < PARTITIONS; p++) out.set(p, [])
  for (const [slot, record] of produced.records) {
    const [partition, offset] = slot.split('/').map(Number)
    out.get(partition).push({ offset, record })
  }
  for (const list of out.values()) list.sort((a, b) => a.offset - b.offset)
  return out
}

// Offsets within a partition are dense from 0: every acknowledged record takes one.
function endOffsets() {
  const out = {}
  for (const [p, list] of byPartition()) out[p] = list.length
  return out
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)

async function producePhase(phase, count, producerConfig, sendConfig) {
  step(`produce ${count} keyed records: ${phase}`)
  const producer = kafka.producer(producerConfig)
  await producer.connect()
  // kafkajs answers a send with a base offset per partition; the records of one partition take
  // consecutive offsets in send order, and the same (default, murmur2) partitioner that the
  // producer uses tells which partition each keyed record goes to.
  const partitioner = Partitioners.DefaultPartitioner()
  const partitionMetadata = [...Array(PARTITIONS).keys()].map(p => ({ partitionId: p, leader: 0 }))
  const messages = []
  for (let i = 0; i < count; i++) {
    messages.push({
      key: `key-${i % 10}`,
      value: `${phase}-${i}`,
      headers: { phase, index: String(i) },
    })
  }
  let metadata
  try {
    metadata = await producer.send({ topic: TOPIC, messages, ...sendConfig })
  } catch (error) {
    check(`${phase}: send`, false, errorText(error))
    await producer.disconnect()
    return
  }
  await producer.disconnect()
  const errors = metadata.filter(m => m.errorCode !== 0).map(m => `partition ${m.partition}: ${m.errorCode}`)
  check(`${phase}: no produce error`, errors.length === 0, errors.join('; '))
  const base = new Map(metadata.map(m => [m.partition, Number(m.baseOffset)]))
  const next = new Map()
  let fresh = true
  let acknowledged = 0
  for (const message of messages) {
    const partition = partitioner({ topic: TOPIC, partitionMetadata, message })
    if (!base.has(partition)) continue
    const offset = base.get(partition) + (next.get(partition) || 0)
    next.set(partition, (next.get(partition) || 0) + 1)
    acknowledged += 1
    const slot = `${partition}/${offset}`
    if (produced.records.has(slot)) {
      fresh = false
      console.log(`  two records acknowledged at partition ${partition} offset ${offset}`)
    }
    produced.records.set(slot, {
      key: message.key,
      value: message.value,
      headers: [['phase', phase], ['index', message.headers.index]],
    })
    const previous = produced.partitionOfKey.get(message.key)
    if (previous !== undefined && previous !== partition) {
      check(`${phase}: key ${message.key} stays on one partition`, false, `${partition}, earlier ${previous}`)
    }
    produced.partitionOfKey.set(message.key, partition)
  }
  check(`${phase}: every record acknowledged`, acknowledged === count, `${acknowledged} of ${count}`)
  check(`${phase}: every acknowledged offset is distinct`, fresh)
}

// One consumer of the group.
class Member {
  constructor(name) {
    this.name = name
    this.assignment = new Set()
    this.received = [] // { partition, offset, key, value, headers, timestampMs }
    this.errors = []
    this.stopped = false
    this.consumer = kafka.consumer({ groupId: GROUP })
    const { GROUP_JOIN, REBALANCING, CRASH } = this.consumer.events
    this.consumer.on(GROUP_JOIN, event => {
      const assigned = event.payload.memberAssignment[TOPIC] || []
      this.assignment = new Set(assigned)
      console.log(`  [${name}] assigned [${assigned}]`)
    })
    this.consumer.on(REBALANCING, () => {
      this.assignment = new Set()
      console.log(`  [${name}] rebalancing`)
    })
    this.consumer.on(CRASH, event => this.errors.push(`crash: ${event.payload.error}`))
  }

  async start() {
    await this.consumer.connect()
    await this.consumer.subscribe({ topics: [TOPIC], fromBeginning: true })
    await this.consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        if (this.stopped) return
        const headers = Object.entries(message.headers || {}).map(([k, v]) => [k, v.toString()])
        this.received.push({
          partition,
          offset: Number(message.offset),
          key: message.key === null ? null : message.key.toString(),
          value: message.value === null ? null : message.value.toString(),
          headers,
          timestampMs: Number(message.timestamp),
        })
      },
    })
  }

  // Commits the offset after the last record read from each partition.
  async commit() {
    const next = new Map()
    for (const r of this.received) next.set(r.partition, r.offset + 1)
    const offsets = [...next].map(([partition, offset]) => ({ topic: TOPIC, partition, offset: String(offset) }))
    await this.consumer.commitOffsets(offsets)
    return offsets
  }
}

function checkConsumed(label, members, startOffsets) {
  const expected = byPartition()
  const owner = new Map()
  let ok = true
  for (const member of members) {
    const perPartition = new Map()
    for (const r of member.received) {
      if (!perPartition.has(r.partition)) perPartition.set(r.partition, [])
      perPartition.get(r.partition).push({ offset: r.offset, key: r.key, value: r.value, headers: r.headers })
    }
    for (const [partition, got] of perPartition) {
      if (owner.has(partition)) {
        ok = check(`${label}: partition ${partition} read by one member`, false,
          `read by ${owner.get(partition)} and ${member.name}`)
      }
      owner.set(partition, member.name)
      const want = expected.get(partition)
        .filter(e => e.offset >= startOffsets[partition])
        .map(e => ({ offset: e.offset, ...e.record }))
      if (!same(got, want)) {
        ok = false
        const gotOffsets = got.map(g => g.offset)
        const wantOffsets = want.map(w => w.offset)
        let detail = `offsets ${JSON.stringify(gotOffsets)} want ${JSON.stringify(wantOffsets)}`
        if (same(gotOffsets, wantOffsets)) {
          const wrong = got.map((g, i) => [g, want[i]]).filter(([g, w]) => !same(g, w)).slice(0, 3)
          detail = `records differ (got, want): ${JSON.stringify(wrong)}`
        }
        check(`${label}: partition ${partition} records exact`, false, detail)
      }
    }
  }
  for (let p = 0; p < PARTITIONS; p++) {
    const want = expected.get(p).filter(e => e.offset >= startOffsets[p])
    if (want.length > 0 && !owner.has(p)) {
      ok = check(`${label}: partition ${p} read`, false, `none of ${want.length} records received`)
    }
  }
  return check(`${label}: every record exactly once, in order, exact`, ok)
}

const totalReceived = members => members.reduce((n, m) => n + m.received.length, 0)
const allPartitions = () => [...Array(PARTITIONS).keys()]
const zeros = () => Object.fromEntries(allPartitions().map(p => [p, 0]))

async function startGroup() {
  step('consume with a group of two members')
  const members = [new Member(`${CLIENT}-member-1`), new Member(`${CLIENT}-member-2`)]
  for (const member of members) await member.start()
  const balanced = () => {
    const sets = members.map(m => [...m.assignment])
    const union = new Set(sets.flat())
    return sets.every(s => s.length > 0) && sets.flat().length === union.size && union.size === PARTITIONS
  }
  check('both members share the partitions', await waitUntil('a balanced group', balanced),
    `assignments ${JSON.stringify(members.map(m => [...m.assignment]))}`)
  return members
}

async function finishGroup(members, admin) {
  const want = produced.records.size
  await waitUntil(`${want} records`, () => totalReceived(members) >= want)
  await sleep(1000) // a duplicate would show up as an extra record
  for (const member of members) member.stopped = true
  checkConsumed('group', members, zeros())
  const errors = members.flatMap(m => m.errors)
  check('group: no consumer error', errors.length === 0, errors.slice(0, 5).join('; '))

  step('commit from each member')
  for (const member of members) {
    try {
      const offsets = await member.commit()
      check(`${member.name}: commit of ${JSON.stringify(offsets.map(o => [o.partition, o.offset]))}`, true)
    } catch (error) {
      check(`${member.name}: commit`, false, errorText(error))
    }
  }
  for (const member of members) await member.consumer.disconnect()

  const end = endOffsets()
  try {
    const fetched = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] })
    const committed = {}
    for (const { partition, offset } of fetched[0].partitions) committed[partition] = Number(offset)
    check('committed offsets read back (OffsetFetch) equal the end offsets', same(committed, end),
      `committed ${JSON.stringify(committed)}, want ${JSON.stringify(end)}`)
  } catch (error) {
    check('committed offsets read back (OffsetFetch)', false, errorText(error))
  }
  return end
}

async function resume(committed) {
  step('restart a consumer in the group: it resumes at the committed offsets')
  const member = new Member(`${CLIENT}-member-3`)
  await member.start()
  check('restarted member gets every partition',
    await waitUntil('the assignment', () => member.assignment.size === PARTITIONS),
    `assignment ${JSON.stringify([...member.assignment])}`)
  const want = produced.records.size - Object.values(committed).reduce((a, b) => a + b, 0)
  await waitUntil(`${want} new records`, () => member.received.length >= want)
  await sleep(1000)
  member.stopped = true
  const first = {}
  for (const r of member.received) if (!(r.partition in first)) first[r.partition] = r.offset
  const wantFirst = Object.fromEntries(Object.keys(first).map(p => [p, committed[p]]))
  check('first offset read per partition is the committed one', same(first, wantFirst),
    `first ${JSON.stringify(first)}, committed ${JSON.stringify(committed)}`)
  checkConsumed('resumed', [member], committed)
  await member.consumer.disconnect()
  return member.received
}

async function createTopic(admin) {
  step(`create topic ${TOPIC} (${PARTITIONS} partitions, retention.ms=${RETENTION_MS})`)
  try {
    const created = await admin.createTopics({
      topics: [{
        topic: TOPIC,
        numPartitions: PARTITIONS,
        replicationFactor: 1,
        configEntries: [{ name: 'retention.ms', value: RETENTION_MS }],
      }],
    })
    if (!check('createTopics', created === true, `answered ${created} (false: the topic existed)`)) return false
  } catch (error) {
    check('createTopics', false, errorText(error))
    return false
  }
  const visible = async () => {
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [TOPIC] })
      return topics.length === 1 && topics[0].partitions.length === PARTITIONS &&
        topics[0].partitions.every(p => p.partitionErrorCode === 0 && p.leader >= 0)
    } catch (error) {
      return false
    }
  }
  return check(`metadata shows ${PARTITIONS} partitions`, await waitUntil('metadata', visible))
}

async function listOffsets(admin, afterMs, allRecords) {
  step('list offsets: earliest, latest, by timestamp (kafkajs has no max-timestamp query)')
  const end = endOffsets()
  let listed
  try {
    listed = await admin.fetchTopicOffsets(TOPIC)
  } catch (error) {
    check('fetchTopicOffsets', false, errorText(error))
    return
  }
  const low = Object.fromEntries(listed.map(p => [p.partition, Number(p.low)]))
  const high = Object.fromEntries(listed.map(p => [p.partition, Number(p.high)]))
  check('earliest offsets are 0', same(low, zeros()), JSON.stringify(low))
  check('latest offsets are the record counts', same(high, end),
    `got ${JSON.stringify(high)}, want ${JSON.stringify(end)}`)
  // The first offset whose timestamp is at or after afterMs, per partition (Kafka answers per
  // record, not per batch); kafkajs reports the end offset where no record is that late.
  const timestamps = new Map(allRecords.map(r => [`${r.partition}/${r.offset}`, r.timestampMs]))
  const want = {}
  for (let p = 0; p < PARTITIONS; p++) {
    want[p] = end[p]
    for (let o = 0; o < end[p]; o++) {
      if (timestamps.get(`${p}/${o}`) >= afterMs) {
        want[p] = o
        break
      }
    }
  }
  for (const [label, at, expected] of [['', afterMs, want], [' 0', 0, zeros()]]) {
    try {
      const byTime = await admin.fetchTopicOffsetsByTimestamp(TOPIC, at)
      const got = Object.fromEntries(byTime.map(p => [p.partition, Number(p.offset)]))
      check(`offsets for timestamp ${at} are the first records at or after it`, same(got, expected),
        `got ${JSON.stringify(got)}, want ${JSON.stringify(expected)}`)
    } catch (error) {
      check(`fetchTopicOffsetsByTimestamp${label}`, false, errorText(error))
    }
  }
}

async function describeConfigs(admin) {
  step('describe topic configs')
  let entries
  try {
    const described = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: TOPIC }],
      includeSynonyms: false,
    })
    const resource = described.resources[0]
    if (!check('describeConfigs', resource.errorCode === 0, `error ${resource.errorCode} ${resource.errorMessage}`)) return
    entries = new Map(resource.configEntries.map(e => [e.configName, e]))
  } catch (error) {
    check('describeConfigs', false, errorText(error))
    return
  }
  const retention = entries.get('retention.ms') || {}
  check('retention.ms is the value set at creation', retention.configValue === RETENTION_MS,
    `got ${JSON.stringify(retention)}`)
  check('retention.ms is reported as a topic override',
    retention.configSource === TOPIC_CONFIG_SOURCE && retention.isDefault === false,
    `source ${retention.configSource}, default ${retention.isDefault}`)
  // Kafka reports every topic config, defaults included, not only the overridden ones.
  for (const name of ['cleanup.policy', 'max.message.bytes', 'retention.bytes', 'segment.bytes']) {
    const entry = entries.get(name)
    check(`${name} is reported (default)`, entry !== undefined && !!entry.configValue,
      `keys reported: ${[...entries.keys()].sort().join(', ')}`)
  }
  const policy = entries.get('cleanup.policy') || {}
  check('cleanup.policy is delete', policy.configValue === 'delete', `got ${policy.configValue}`)
}

async function deleteTopic(admin) {
  step('delete topic')
  try {
    await admin.deleteTopics({ topics: [TOPIC] })
    check('deleteTopics', true)
  } catch (error) {
    check('deleteTopics', false, errorText(error))
    return
  }
  check('topic gone from metadata',
    await waitUntil('the topic to go', async () => !(await admin.listTopics()).includes(TOPIC)))
}

async function run() {
  const admin = kafka.admin()
  await admin.connect()
  try {
    if (!(await createTopic(admin))) {
      console.log('  stopped: no topic')
      return
    }
    const members = await startGroup()
    await producePhase('defaults', DEFAULT_RECORDS, {}, {})
    await producePhase('idempotent', PHASE_RECORDS, { idempotent: true, maxInFlightRequests: 1 }, { acks: -1 })
    for (const [name, compression] of [['gzip', CompressionTypes.GZIP], ['snappy', CompressionTypes.Snappy]]) {
      await producePhase(`compression-${name}`, PHASE_RECORDS, { idempotent: true, maxInFlightRequests: 1 },
        { acks: -1, compression })
    }
    const committed = await finishGroup(members, admin)
    const groupRecords = members.flatMap(m => m.received)
    // Records produced from here on carry timestamps strictly after every earlier record.
    const latest = Math.max(0, ...groupRecords.map(r => r.timestampMs))
    await waitUntil('the clock to pass the last record', () => Date.now() > latest + 1)
    const afterMs = Date.now()
    await producePhase('after-commit', AFTER_RECORDS, {}, {})
    const resumed = await resume(committed)
    await listOffsets(admin, afterMs, groupRecords.concat(resumed))
    await describeConfigs(admin)
    await deleteTopic(admin)
  } finally {
    await admin.disconnect()
  }
}

async function main() {
  if (!BOOTSTRAP) {
    console.error('KAFKA_BOOTSTRAP is not set')
    process.exit(2)
  }
  console.log(`${CLIENT} ${require('kafkajs/package.json').version} against ${BOOTSTRAP}`)
  try {
    await run()
  } catch (error) {
    check('no unexpected exception', false, error.stack || errorText(error))
  }
  const total = checks.passed + checks.failed.length
  if (checks.failed.length > 0) {
    console.log(`RESULT ${CLIENT}: ${checks.failed.length} of ${total} checks FAILED: ${checks.failed.join(', ')}`)
    process.exit(1)
  }
  console.log(`RESULT ${CLIENT}: all ${total} checks passed`)
  process.exit(0)
}

main()
