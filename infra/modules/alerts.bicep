// What pages the on-call engineer: events Event Grid gave up on (dead-lettered or dropped),
// deliveries failing, function executions failing, and batch jobs that ended Failed. Every rule
// is created whether or not an address is given; the action group mails it when there is one.
// docs/alerts.md's table says what to do when each fires.

@description('Required. Prefix of the rule and action group names.')
param namePrefix string

@description('Optional. Tags for every rule.')
param tags object = {}

@description('Optional. Address the action group mails. Empty: the rules fire into the portal only.')
param alertEmail string = ''

@description('Required. Resource id of the Event Grid system topic.')
param systemTopicId string

@description('Required. Resource id of the Application Insights component of the function app.')
param applicationInsightsId string

@description('Required. Azure region of the Application Insights component (log alert rules live there).')
param location string

@description('Optional. Severity of rules that mean events or jobs need a person (dead-lettered, dropped, job Failed): 0 critical to 4 verbose.')
@minValue(0)
@maxValue(4)
param lossSeverity int = 1

@description('Optional. Severity of rules on failure rates that retries may still absorb (deliveries, executions).')
@minValue(0)
@maxValue(4)
param failureSeverity int = 2

@description('Optional. How often each rule is evaluated.')
@allowed([
  'PT1M'
  'PT5M'
  'PT15M'
  'PT30M'
  'PT1H'
])
param evaluationFrequency string = 'PT5M'

@description('Optional. The period each evaluation looks back over; one shorter than evaluationFrequency is raised to it.')
@allowed([
  'PT5M'
  'PT15M'
  'PT30M'
  'PT1H'
  'PT6H'
])
param windowSize string = 'PT15M'

@description('Optional. Failed delivery attempts of one subscription in a window that fire the alert; Event Grid retries, so a cold start\'s few are expected.')
@minValue(1)
param deliveryFailureThreshold int = 10

@description('Optional. Failed executions of one function in a window that fire the alert (each is retried by Event Grid).')
@minValue(1)
param functionFailureThreshold int = 5

// Azure Monitor refuses a window shorter than the evaluation frequency, and the two parameters
// are chosen independently, so the rules use the longer of the two.
var durationMinutes = {
  PT1M: 1
  PT5M: 5
  PT15M: 15
  PT30M: 30
  PT1H: 60
  PT6H: 360
}
var ruleWindowSize = (durationMinutes[windowSize] < durationMinutes[evaluationFrequency]) ? evaluationFrequency : windowSize

var topicNamespace = 'Microsoft.EventGrid/systemTopics'
var perSubscription = [
  {
    name: 'EventSubscriptionName'
    operator: 'Include'
    values: [
      '*'
    ]
  }
]
var actions = [
  {
    actionGroupId: actionGroup.id
  }
]

// One rule per metric, each split by subscription so the alert names the route that failed.
var topicRules = [
  {
    key: 'dead-lettered'
    metricName: 'DeadLetteredCount'
    threshold: 0
    severity: lossSeverity
    description: 'Event Grid dead-lettered events of a subscription. Replay them: python -m tools.ops replay-deadletters (docs/alerts.md).'
  }
  {
    key: 'dropped'
    metricName: 'DroppedEventCount'
    threshold: 0
    severity: lossSeverity
    description: 'Event Grid dropped events of a subscription (neither delivered nor dead-lettered). Find the blobs and re-run them: python -m tools.ops backfill (docs/alerts.md).'
  }
  {
    key: 'delivery-failures'
    metricName: 'DeliveryAttemptFailCount'
    threshold: deliveryFailureThreshold
    severity: failureSeverity
    description: 'Deliveries to a function keep failing; Event Grid retries and dead-letters what runs out of attempts. Check the function app (docs/alerts.md).'
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-oncall'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'blobevents'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'on-call'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource topicAlerts 'Microsoft.Insights/metricAlerts@2026-01-01' = [
  for rule in topicRules: {
    name: '${namePrefix}-${rule.key}'
    location: 'global'
    tags: tags
    properties: {
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        systemTopicId
      ]
      evaluationFrequency: evaluationFrequency
      windowSize: ruleWindowSize
      autoMitigate: true
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            criterionType: 'StaticThresholdCriterion'
            name: rule.metricName
            metricNamespace: topicNamespace
            metricName: rule.metricName
            operator: 'GreaterThan'
            threshold: rule.threshold
            timeAggregation: 'Total'
            dimensions: perSubscription
          }
        ]
      }
      actions: actions
    }
  }
]

// Application Insights logs each function execution as a request named after the function.
var logRules = [
  {
    key: 'function-failures'
    severity: failureSeverity
    description: 'A function fails executions; Event Grid retries each. Look at the exceptions of the named function (docs/alerts.md).'
    query: 'requests | where success == false | summarize failures = count() by functionName = name'
    measure: 'failures'
    threshold: functionFailureThreshold - 1
    dimension: 'functionName'
  }
  {
    // The job tracker logs `track_batch_jobs blob=<container>/<name> job=<name> outcome=job-<status>`.
    key: 'batch-jobs-failed'
    severity: lossSeverity
    description: 'Azure ML batch jobs ended Failed. Resubmit them: python -m tools.ops jobs --resubmit-failed (docs/alerts.md).'
    query: 'traces | where message startswith "track_batch_jobs " and message has "outcome=job-failed" | parse message with * " job=" job " outcome=" outcome | where outcome == "job-failed" | summarize failed = count() by job'
    measure: 'failed'
    threshold: 0
    dimension: 'job'
  }
]

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = [
  for rule in logRules: {
    name: '${namePrefix}-${rule.key}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        applicationInsightsId
      ]
      evaluationFrequency: evaluationFrequency
      windowSize: ruleWindowSize
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Total'
            metricMeasureColumn: rule.measure
            operator: 'GreaterThan'
            threshold: rule.threshold
            dimensions: [
              {
                name: rule.dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

@description('The action group resource id.')
output actionGroupId string = actionGroup.id
