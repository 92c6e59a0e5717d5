// Service worker of the eldercare dashboard. It shows the alarm's system
// notifications (ServiceWorkerRegistration.showNotification from the page)
// and opens or focuses the board when one is tapped. It caches nothing:
// health data is never stored on the device, and the board needs the live
// stream anyway.
self.addEventListener('install', function () { self.skipWaiting(); });
self.addEventListener('activate', function (e) { e.waitUntil(self.clients.claim()); });
self.addEventListener('notificationclick', function (e) {
  e.notification.close();
  var url = (e.notification.data && e.notification.data.url) || '/board';
  e.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (list) {
    for (var i = 0; i < list.length; i++) {
      if (new URL(list[i].url).pathname === url && 'focus' in list[i]) { return list[i].focus(); }
    }
    return self.clients.openWindow ? self.clients.openWindow(url) : undefined;
  }));
});
