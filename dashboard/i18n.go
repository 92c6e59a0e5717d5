package dashboard

import (
	"fmt"
	"html/template"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
)

// Languages of the dashboard.
const (
	LangEN = "en"
	LangZH = "zh-CN"
)

// Langs lists the supported languages, the default first.
var Langs = []string{LangEN, LangZH}

// langCookie remembers a language chosen with ?lang= when the logged-in
// user has none (before accounts carry a language, and on the login page).
const langCookie = "eldercare_lang"

// uiText holds every user-visible English string of the HTML pages, keyed
// by a stable name; zhText is the Simplified Chinese table with the same
// keys (TestTranslationsComplete checks both have every key).
var uiText = map[string]string{
	"app.title":             "Eldercare dashboard",
	"nav.board":             "Live board",
	"nav.alerts":            "Alerts",
	"nav.family":            "My family",
	"nav.manager":           "Reports",
	"nav.admin":             "Administration",
	"nav.logout":            "Log out",
	"nav.lang":              "中文",
	"login.title":           "Log in",
	"login.token":           "Access token",
	"login.name":            "Your name (shown in the alert history)",
	"login.submit":          "Log in",
	"login.wrong":           "That token is not right.",
	"board.title":           "Live board",
	"board.empty":           "No beds are registered yet.",
	"board.unassigned":      "Unassigned alerts",
	"board.noresident":      "No resident",
	"board.queue":           "Alert queue",
	"occ.in":                "In bed",
	"occ.out":               "Out of bed",
	"occ.unknown":           "Occupancy unknown",
	"vital.hr_bpm":          "HR",
	"vital.spo2_pct":        "SpO2",
	"vital.resp_per_min":    "RR",
	"vital.pulse_bpm":       "Pulse",
	"unit.hr_bpm":           "bpm",
	"unit.spo2_pct":         "%",
	"unit.resp_per_min":     "/min",
	"unit.pulse_bpm":        "bpm",
	"age.s":                 "{n} s ago",
	"age.min":               "{n} min ago",
	"age.h":                 "{n} h ago",
	"live.connecting":       "Connecting to the live feed…",
	"live.ok":               "Live",
	"live.lost":             "Live feed lost; retrying…",
	"alerts.title":          "Alerts",
	"alerts.active":         "Open and acknowledged",
	"alerts.resolved":       "Resolved in the last 24 hours",
	"alerts.none":           "No alerts.",
	"alerts.ack":            "Acknowledge",
	"alerts.resolve":        "Resolve",
	"alerts.resolve_as":     "Resolve:",
	"alerts.outcome":        "Outcome",
	"alerts.choose_outcome": "Choose…",
	"alerts.note":           "Note",
	"alerts.unassigned":     "unassigned",
	"alerts.ackby":          "acknowledged by",
	"alerts.device":         "device",
	"alerts.site":           "site",
	"outcome.injury":        "Injury",
	"outcome.no_injury":     "No injury",
	"outcome.false_alarm":   "False alarm",
	"outcome.other":         "Other",
	"col.severity":          "Severity",
	"col.type":              "Type",
	"col.resident":          "Resident",
	"col.device":            "Device",
	"col.opened":            "Opened",
	"col.status":            "Status",
	"col.detail":            "Detail",
	"col.actions":           "Actions",
	"col.outcome":           "Outcome",
	"col.note":              "Note",
	"col.resolved":          "Resolved",
	"res.title":             "Resident",
	"res.bed":               "Bed",
	"res.site":              "Site",
	"res.born":              "Born",
	"res.vulnerable":        "Vulnerable: stricter escalation",
	"res.devices":           "Devices",
	"res.alerts":            "Open alerts",
	"res.vitals":            "Vitals, last 15 minutes",
	"res.vitals_hour":       "Vitals, last hour",
	"res.vitals_day":        "Vitals, last 24 hours",
	"chart.hour":            "Last hour",
	"chart.day":             "Last day",
	"chart.empty":           "No readings in this period.",
	"chart.error":           "Vitals history is unavailable right now.",
	"res.novitals":          "No readings in this period.",
	"res.vitalserr":         "Vitals history is unavailable right now.",
	"res.timeline":          "Event timeline",
	"res.notimeline":        "No alert history.",
	"res.checkin":           "Check in: I am at the bed",
	"res.checkedin":         "Visit recorded.",
	"res.lastvisit":         "Last visit",
	"res.novisit":           "No visit recorded.",
	"type.fall":             "Fall",
	"type.sos":              "SOS",
	"type.spo2_low":         "Low SpO2",
	"type.heart_rate":       "Heart rate",
	"type.respiration":      "Respiration",
	"type.device_offline":   "Device offline",
	"type.bed_exit":         "Bed exit",
	"type.out_of_bed_night": "Out of bed at night",
	"type.no_activity":      "No activity",
	"type.meal_missed":      "Meal missed",
	"type.low_battery":      "Low battery",
	"type.unprotected":      "Unprotected",
	"type.news2":            "NEWS2 warning score",
	"type.visit":            "Visit",
	"sev.critical":          "critical",
	"sev.high":              "high",
	"sev.warning":           "warning",
	"status.open":           "open",
	"status.acknowledged":   "acknowledged",
	"status.resolved":       "resolved",
	"err.title":             "Error",
	"err.back":              "Back",
	"state.online":          "online",
	"state.offline":         "offline",
	"state.unknown":         "unknown",
	// Family view.
	"fam.title":          "My family",
	"fam.none":           "No resident is linked to your account. Ask the care home to link you.",
	"fam.now":            "Right now",
	"fam.state.in_bed":   "In bed",
	"fam.state.up":       "Up and about",
	"fam.state.meal":     "At a meal",
	"fam.state.inactive": "No activity noticed recently",
	"fam.state.unknown":  "We have no recent information",
	"fam.since":          "since",
	"fam.vitals":         "Latest vitals",
	"fam.vital_line":     "{label} {value} {unit} — {verdict} ({lo}-{hi})",
	"fam.normal":         "normal",
	"fam.low":            "below the usual range",
	"fam.high":           "above the usual range",
	"fam.novitals":       "No recent readings.",
	"fam.events":         "Serious events, last 30 days",
	"fam.noevents":       "No serious events.",
	"fam.handled":        "handled",
	"fam.open":           "being looked after",
	"fam.hr":             "Heart rate",
	"fam.spo2":           "Blood oxygen",
	"fam.rr":             "Breathing rate",
	"fam.pulse":          "Pulse",
	"pref.title":         "My notifications",
	"pref.email":         "E-mail address for alerts",
	"pref.quiet":         "Quiet hours (only urgent alerts reach you)",
	"pref.quiet_on":      "Use quiet hours",
	"pref.start":         "From (HH:MM)",
	"pref.end":           "To (HH:MM)",
	"pref.zone":          "Time zone",
	"pref.save":          "Save",
	"pref.saved":         "Saved.",
	"pref.unavailable":   "Notification settings are not available on this server.",
	"form.errors":        "Please correct the fields marked below.",
	// Manager view.
	"mgr.title":        "Reports",
	"mgr.period":       "Period",
	"mgr.month":        "Month (YYYY-MM)",
	"mgr.show":         "Show",
	"mgr.csv":          "CSV",
	"mgr.occupancy":    "Occupancy",
	"mgr.beds":         "Beds",
	"mgr.occupied":     "Occupied",
	"mgr.nursing":      "Nursing beds",
	"mgr.share":        "Share",
	"mgr.devices":      "Device health and unprotected residents",
	"mgr.unprotected":  "Unprotected residents (open alerts)",
	"mgr.offline":      "Devices offline (open alerts)",
	"mgr.nounprot":     "Every resident is protected.",
	"mgr.response":     "Response times",
	"mgr.dimension":    "By",
	"mgr.key":          "Group",
	"mgr.alerts":       "Alerts",
	"mgr.ack_p50":      "Acknowledge p50",
	"mgr.ack_p90":      "Acknowledge p90",
	"mgr.res_p50":      "Resolve p50",
	"mgr.res_p90":      "Resolve p90",
	"mgr.false":        "False-alarm rate by device",
	"mgr.resolved":     "Resolved",
	"mgr.false_alarms": "False alarms",
	"mgr.rate":         "Rate",
	"mgr.meals":        "Meals served and missed",
	"mgr.served":       "Served",
	"mgr.missed":       "Missed",
	"mgr.mealserr":     "Meal records are unavailable right now; served meals are not counted.",
	"mgr.visits":       "Visit coverage of vulnerable residents",
	"mgr.visited_days": "Days with a visit",
	"mgr.days":         "Days in period",
	"mgr.coverage":     "Coverage",
	"mgr.visit_count":  "Visits",
	"mgr.none":         "No data in this period.",
	"dim.site":         "site",
	"dim.shift":        "shift",
	"dim.receiver":     "station",
	"dim.responder":    "responder",
	// Admin.
	"adm.edit":        "Add or change",
	"adm.title":       "Administration",
	"adm.sites":       "Sites",
	"adm.rooms":       "Rooms",
	"adm.beds":        "Beds",
	"adm.residents":   "Residents",
	"adm.devices":     "Devices",
	"adm.bind":        "Bind to resident",
	"adm.unbind":      "Unbind",
	"adm.bound":       "Bound to",
	"adm.device":      "Device id",
	"adm.resident":    "Resident id",
	"adm.policies":    "Escalation policies",
	"adm.rosters":     "Rosters",
	"adm.policy_id":   "Policy id",
	"adm.steps":       "Steps, one a line: delay targets (e.g. \"0s on_duty\", \"3m role:nurse_lead\")",
	"adm.repeat":      "Repeat reminders every (e.g. 5m; empty = never)",
	"adm.roster":      "Site id",
	"adm.zone":        "Time zone (IANA, e.g. Asia/Shanghai)",
	"adm.shifts":      "Shifts, one a line: name start end on-duty ids (e.g. \"day 07:00 19:00 ana,bo\")",
	"adm.save":        "Save",
	"adm.saved":       "Saved.",
	"adm.readonly":    "This server cannot change this part from the dashboard.",
	"adm.kind":        "Kind",
	"adm.name":        "Name",
	"adm.timezone":    "Time zone",
	"adm.id":          "Id",
	"adm.nursing":     "Nursing",
	"adm.vulnerable":  "Vulnerable",
	"adm.users":       "Users",
	"adm.add_user":    "Add a user (a password is generated and shown once)",
	"adm.username":    "Username",
	"adm.role":        "Role",
	"adm.lang":        "Language",
	"role.admin":      "Administrator",
	"role.manager":    "Manager",
	"role.nurse_lead": "Nurse lead",
	"role.caregiver":  "Caregiver",
	"role.family":     "Family",
	"yes":             "yes",
	"no":              "no",
}

var zhText = map[string]string{
	"app.title":             "养老看护平台",
	"nav.board":             "实时看板",
	"nav.alerts":            "告警",
	"nav.family":            "我的家人",
	"nav.manager":           "报表",
	"nav.admin":             "系统管理",
	"nav.logout":            "退出登录",
	"nav.lang":              "English",
	"login.title":           "登录",
	"login.token":           "访问令牌",
	"login.name":            "您的姓名（显示在告警记录中）",
	"login.submit":          "登录",
	"login.wrong":           "令牌不正确。",
	"board.title":           "实时看板",
	"board.empty":           "尚未登记任何床位。",
	"board.unassigned":      "未分配的告警",
	"board.noresident":      "无入住老人",
	"board.queue":           "告警队列",
	"occ.in":                "在床",
	"occ.out":               "离床",
	"occ.unknown":           "在床状态未知",
	"vital.hr_bpm":          "心率",
	"vital.spo2_pct":        "血氧",
	"vital.resp_per_min":    "呼吸",
	"vital.pulse_bpm":       "脉搏",
	"unit.hr_bpm":           "次/分",
	"unit.spo2_pct":         "%",
	"unit.resp_per_min":     "次/分",
	"unit.pulse_bpm":        "次/分",
	"age.s":                 "{n} 秒前",
	"age.min":               "{n} 分钟前",
	"age.h":                 "{n} 小时前",
	"live.connecting":       "正在连接实时数据…",
	"live.ok":               "实时",
	"live.lost":             "实时数据中断，正在重试…",
	"alerts.title":          "告警",
	"alerts.active":         "未处理和已确认",
	"alerts.resolved":       "最近 24 小时已解决",
	"alerts.none":           "没有告警。",
	"alerts.ack":            "确认",
	"alerts.resolve":        "解决",
	"alerts.resolve_as":     "解决：",
	"alerts.outcome":        "结果",
	"alerts.choose_outcome": "请选择…",
	"alerts.note":           "备注",
	"alerts.unassigned":     "未分配",
	"alerts.ackby":          "确认人",
	"alerts.device":         "设备",
	"alerts.site":           "站点",
	"outcome.injury":        "受伤",
	"outcome.no_injury":     "未受伤",
	"outcome.false_alarm":   "误报",
	"outcome.other":         "其他",
	"col.severity":          "级别",
	"col.type":              "类型",
	"col.resident":          "老人",
	"col.device":            "设备",
	"col.opened":            "发生时间",
	"col.status":            "状态",
	"col.detail":            "详情",
	"col.actions":           "操作",
	"col.outcome":           "结果",
	"col.note":              "备注",
	"col.resolved":          "解决时间",
	"res.title":             "老人",
	"res.bed":               "床位",
	"res.site":              "站点",
	"res.born":              "出生年份",
	"res.vulnerable":        "重点关注：更严格的升级",
	"res.devices":           "设备",
	"res.alerts":            "未处理告警",
	"res.vitals":            "生命体征（最近 15 分钟）",
	"res.vitals_hour":       "生命体征（最近 1 小时）",
	"res.vitals_day":        "生命体征（最近 24 小时）",
	"chart.hour":            "最近 1 小时",
	"chart.day":             "最近 24 小时",
	"chart.empty":           "此时段没有读数。",
	"chart.error":           "暂时无法读取生命体征历史。",
	"res.novitals":          "此时段没有读数。",
	"res.vitalserr":         "暂时无法读取生命体征历史。",
	"res.timeline":          "事件时间线",
	"res.notimeline":        "没有告警记录。",
	"res.checkin":           "签到：我已到床边",
	"res.checkedin":         "已记录探视。",
	"res.lastvisit":         "最近探视",
	"res.novisit":           "尚无探视记录。",
	"type.fall":             "跌倒",
	"type.sos":              "紧急呼叫",
	"type.spo2_low":         "血氧偏低",
	"type.heart_rate":       "心率异常",
	"type.respiration":      "呼吸异常",
	"type.device_offline":   "设备离线",
	"type.bed_exit":         "离床",
	"type.out_of_bed_night": "夜间离床",
	"type.no_activity":      "无活动",
	"type.meal_missed":      "未就餐",
	"type.low_battery":      "电量低",
	"type.unprotected":      "无防护",
	"type.news2":            "NEWS2 预警评分",
	"type.visit":            "探视",
	"sev.critical":          "紧急",
	"sev.high":              "高",
	"sev.warning":           "警告",
	"status.open":           "未处理",
	"status.acknowledged":   "已确认",
	"status.resolved":       "已解决",
	"err.title":             "错误",
	"err.back":              "返回",
	"state.online":          "在线",
	"state.offline":         "离线",
	"state.unknown":         "未知",
	"fam.title":             "我的家人",
	"fam.none":              "您的账号尚未关联任何老人，请联系养老机构。",
	"fam.now":               "当前状态",
	"fam.state.in_bed":      "在床休息",
	"fam.state.up":          "已起床活动",
	"fam.state.meal":        "正在用餐",
	"fam.state.inactive":    "最近未发现活动",
	"fam.state.unknown":     "暂无最新信息",
	"fam.since":             "自",
	"fam.vitals":            "最新生命体征",
	"fam.vital_line":        "{label} {value} {unit} — {verdict}（{lo}-{hi}）",
	"fam.normal":            "正常",
	"fam.low":               "低于正常范围",
	"fam.high":              "高于正常范围",
	"fam.novitals":          "最近没有读数。",
	"fam.events":            "最近 30 天的重要事件",
	"fam.noevents":          "没有重要事件。",
	"fam.handled":           "已处理",
	"fam.open":              "正在处理",
	"fam.hr":                "心率",
	"fam.spo2":              "血氧",
	"fam.rr":                "呼吸频率",
	"fam.pulse":             "脉搏",
	"pref.title":            "我的通知设置",
	"pref.email":            "接收告警的电子邮箱",
	"pref.quiet":            "免打扰时段（仅紧急告警会通知您）",
	"pref.quiet_on":         "启用免打扰",
	"pref.start":            "开始（时:分）",
	"pref.end":              "结束（时:分）",
	"pref.zone":             "时区",
	"pref.save":             "保存",
	"pref.saved":            "已保存。",
	"pref.unavailable":      "此服务器不支持通知设置。",
	"form.errors":           "请修改下面标出的字段。",
	"mgr.title":             "报表",
	"mgr.period":            "统计周期",
	"mgr.month":             "月份（YYYY-MM）",
	"mgr.show":              "查看",
	"mgr.csv":               "CSV",
	"mgr.occupancy":         "入住率",
	"mgr.beds":              "床位数",
	"mgr.occupied":          "已入住",
	"mgr.nursing":           "护理床位",
	"mgr.share":             "占比",
	"mgr.devices":           "设备状况与无防护老人",
	"mgr.unprotected":       "无防护老人（未处理告警）",
	"mgr.offline":           "离线设备（未处理告警）",
	"mgr.nounprot":          "所有老人均有防护。",
	"mgr.response":          "响应时间",
	"mgr.dimension":         "维度",
	"mgr.key":               "分组",
	"mgr.alerts":            "告警数",
	"mgr.ack_p50":           "确认 p50",
	"mgr.ack_p90":           "确认 p90",
	"mgr.res_p50":           "解决 p50",
	"mgr.res_p90":           "解决 p90",
	"mgr.false":             "各设备误报率",
	"mgr.resolved":          "已解决",
	"mgr.false_alarms":      "误报",
	"mgr.rate":              "比率",
	"mgr.meals":             "用餐与缺餐",
	"mgr.served":            "已用餐",
	"mgr.missed":            "缺餐",
	"mgr.mealserr":          "暂时无法读取用餐记录，已用餐次数未统计。",
	"mgr.visits":            "重点关注老人的探视覆盖率",
	"mgr.visited_days":      "有探视的天数",
	"mgr.days":              "周期天数",
	"mgr.coverage":          "覆盖率",
	"mgr.visit_count":       "探视次数",
	"mgr.none":              "此周期没有数据。",
	"dim.site":              "站点",
	"dim.shift":             "班次",
	"dim.receiver":          "渠道",
	"dim.responder":         "响应人",
	"adm.edit":              "新增或修改",
	"adm.title":             "系统管理",
	"adm.sites":             "站点",
	"adm.rooms":             "房间",
	"adm.beds":              "床位",
	"adm.residents":         "老人",
	"adm.devices":           "设备",
	"adm.bind":              "绑定到老人",
	"adm.unbind":            "解除绑定",
	"adm.bound":             "绑定到",
	"adm.device":            "设备编号",
	"adm.resident":          "老人编号",
	"adm.policies":          "升级策略",
	"adm.rosters":           "排班表",
	"adm.policy_id":         "策略编号",
	"adm.steps":             "步骤，每行一条：延迟 目标（如 \"0s on_duty\"、\"3m role:nurse_lead\"）",
	"adm.repeat":            "提醒间隔（如 5m；留空表示不提醒）",
	"adm.roster":            "站点编号",
	"adm.zone":              "时区（IANA，如 Asia/Shanghai）",
	"adm.shifts":            "班次，每行一条：名称 开始 结束 值班人编号（如 \"day 07:00 19:00 ana,bo\"）",
	"adm.save":              "保存",
	"adm.saved":             "已保存。",
	"adm.readonly":          "此服务器不能在看板中修改这部分。",
	"adm.kind":              "类型",
	"adm.name":              "名称",
	"adm.timezone":          "时区",
	"adm.id":                "编号",
	"adm.nursing":           "护理",
	"adm.vulnerable":        "重点关注",
	"adm.users":             "用户",
	"adm.add_user":          "添加用户（系统生成密码，仅显示一次）",
	"adm.username":          "用户名",
	"adm.role":              "角色",
	"adm.lang":              "语言",
	"role.admin":            "管理员",
	"role.manager":          "院长/经理",
	"role.nurse_lead":       "护士长",
	"role.caregiver":        "护理员",
	"role.family":           "家属",
	"yes":                   "是",
	"no":                    "否",
}

// tables maps a language to its table.
var tables = map[string]map[string]string{LangEN: uiText, LangZH: zhText}

// tr returns the English text of key, or the key itself when it has none.
func tr(key string) string { return trIn(LangEN, key) }

// trIn returns the text of key in lang, falling back to English and then
// to the key itself.
func trIn(lang, key string) string {
	if s, ok := tables[lang][key]; ok {
		return s
	}
	if s, ok := uiText[key]; ok {
		return s
	}
	return key
}

// trf is trIn with "{name}" placeholders replaced by args (name, value
// pairs).
func trf(lang, key string, args ...string) string {
	s := trIn(lang, key)
	for i := 0; i+1 < len(args); i += 2 {
		s = strings.ReplaceAll(s, "{"+args[i]+"}", args[i+1])
	}
	return s
}

// validLang reports whether l is one of Langs.
func validLang(l string) bool { return l == LangEN || l == LangZH }

// langOf is the language of the request: c.Locals("lang") (set by the
// account middleware from the user's language), else ?lang= (remembered in
// a cookie), else that cookie, else the browser's Accept-Language (zh* =
// zh-CN), else English.
func langOf(c *fiber.Ctx) string {
	if l, ok := c.Locals("lang").(string); ok && validLang(l) {
		return l
	}
	if l := c.Query("lang"); validLang(l) {
		c.Cookie(&fiber.Cookie{Name: langCookie, Value: l, Path: "/", HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, MaxAge: 365 * 24 * 3600})
		return l
	}
	if l := c.Cookies(langCookie); validLang(l) {
		return l
	}
	for _, part := range strings.Split(c.Get(fiber.HeaderAcceptLanguage), ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case strings.HasPrefix(tag, "zh"):
			return LangZH
		case strings.HasPrefix(tag, "en"):
			return LangEN
		}
	}
	return LangEN
}

// langFuncs are the template functions bound to a language: t (text of a
// key), tt (text of prefix+key), tf (text with {name} placeholders), lang
// (the language tag) and i18n (the whole table, for the page script).
func langFuncs(lang string) template.FuncMap {
	merged := make(map[string]string, len(uiText))
	for k := range uiText {
		merged[k] = trIn(lang, k)
	}
	return template.FuncMap{
		"t":    func(key string) string { return trIn(lang, key) },
		"tt":   func(prefix, key string) string { return trIn(lang, prefix+key) },
		"tf":   func(key string, args ...string) string { return trf(lang, key, args...) },
		"lang": func() string { return lang },
		"i18n": func() map[string]string { return merged },
		"otherLang": func() string {
			if lang == LangZH {
				return LangEN
			}
			return LangZH
		},
	}
}

// langTemplates are the page templates, parsed once per language with
// langFuncs bound.
var langTemplates struct {
	once sync.Once
	m    map[string]*template.Template
	err  error
}

// templatesIn returns the templates of lang (English for an unknown one).
func templatesIn(lang string) (*template.Template, error) {
	langTemplates.once.Do(func() {
		langTemplates.m = map[string]*template.Template{}
		for _, l := range Langs {
			t, err := parseTemplates()
			if err != nil {
				langTemplates.err = err
				return
			}
			langTemplates.m[l] = t.Funcs(langFuncs(l))
		}
	})
	if langTemplates.err != nil {
		return nil, fmt.Errorf("templates of %s: %w", lang, langTemplates.err)
	}
	if t, ok := langTemplates.m[lang]; ok {
		return t, nil
	}
	return langTemplates.m[LangEN], nil
}

// templatesFor returns the templates in the request's language.
func (s *Server) templatesFor(c *fiber.Ctx) *template.Template {
	t, err := templatesIn(langOf(c))
	if err != nil {
		s.log.Error("dashboard templates", "err", err)
		return s.tmpl
	}
	return t
}
